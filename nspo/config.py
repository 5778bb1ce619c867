"""The NSPO experiment's config fields, checked before any work.

`validate_config(config)` checks the shared safety-world fields
(`common.train.sft_world.fields`) and the `nspo` and `rl` sections: an
unknown field, a missing one, or a value of the wrong type or range raises a
`common.schema.ConfigError` naming the dotted field, the value and what is
allowed.
"""

from __future__ import annotations

import ml_collections

from common import schema
from common.train import sft_world
from nspo import capture
from nspo import rules
from nspo import safety_rl
from nspo import spaces


def fields() -> dict:
  """The checks of every field of the NSPO config."""
  pos = schema.integer(1)
  lr = schema.number(0.0, open_low=True)
  return {
    **sft_world.fields(),
    'nspo': {
      'sites': schema.names(capture.SITES),
      'rule': schema.choice(rules.RULES),
      'value': schema.number(0.0, open_low=True),
      'representation': schema.choice(spaces.REPRESENTATIONS),
      'allow_frozen': schema.boolean(),
      'batch_size': pos,
    },
    'rl': {
      'arms': schema.names(safety_rl.ARMS),
      'steps': pos,
      'prompts_per_step': schema.integer(2),
      'harmful_fraction': schema.probability(open_low=True),
      'mixed_harmful_fraction': schema.probability(
        open_low=True, open_high=True
      ),
      'num_generations': schema.integer(2),
      'temperature': schema.number(0.0, open_low=True),
      'epsilon': schema.number(0.0, open_low=True),
      'learning_rate': lr,
      'b1': schema.probability(open_high=True),
      'weight_decay': schema.number(0.0),
      'reproject_every': pos,
      'trainable': schema.string(non_empty=True),
      'eval_every': pos,
      'checkpoint_every': schema.integer(0),
    },
  }


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks fields, types and ranges up front.

  Raises:
    common.schema.ConfigError: naming the field, the value and what is
      allowed.
  """
  schema.validate(config, fields(), experiment='nspo')
