"""The CKU experiment's config fields, checked before any work.

`validate_config(config)` checks the shared safety-world fields
(`common.train.sft_world.fields`) and the `cku` section: an unknown field, a
missing one, or a value of the wrong type or range raises a
`common.schema.ConfigError` naming the dotted field, the value and what is
allowed. Layer indices are checked against the model's depth here too.
"""

from __future__ import annotations

import ml_collections

from cku import losses
from cku import scoring
from common import models
from common import schema
from common.train import sft_world

ARMS = ('ga', 'ga_layers', 'cku')


def fields() -> dict:
  """The checks of every field of the CKU config."""
  pos = schema.integer(1)
  return {
    **sft_world.fields(),
    'cku': {
      'arms': schema.names(ARMS),
      'score': schema.choice(scoring.SCORES),
      'score_batch_size': pos,
      'score_prompt': schema.boolean(),
      'lock_rate': schema.probability(open_high=True),
      'layers': schema.sequence(schema.integer(0), unique=True),
      'loss': schema.choice(losses.FORGET_LOSSES),
      'retain_weight': schema.number(0.0),
      'npo_beta': schema.number(0.0, open_low=True),
      'learning_rate': schema.number(0.0, open_low=True),
      'weight_decay': schema.number(0.0),
      'steps': pos,
      'forget_batch_size': pos,
      'retain_batch_size': pos,
      'eval_every': pos,
      'checkpoint_every': schema.integer(0),
    },
  }


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks fields, types and ranges up front, layers against the depth.

  Raises:
    common.schema.ConfigError: naming the field, the value and what is
      allowed.
  """
  schema.validate(config, fields(), experiment='cku')
  hf_dir = config.model.get('hf_dir')
  if hf_dir:  # the checkpoint's depth (its config.json; no weights read)
    depth = models.load_hf_config(hf_dir).n_layers
  else:
    depth = models.build_config(config.model, vocab_size=256).n_layers
  for i, layer in enumerate(config.cku.layers):
    if layer >= depth:
      schema.fail(
        f'cku.layers[{i}]', layer, f'a layer index < n_layers={depth}'
      )
