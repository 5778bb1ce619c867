"""The experiment config: its fields, and validation before any work.

`validate_config(config)` checks that the config has exactly the fields of
`FIELDS` (an unknown or misspelt field, e.g. the old `victim.lr`, is an
error that lists the allowed ones) and that every value has the right type
and range. It raises a `common.schema.ConfigError` (a `ValueError`) naming
the field, the value and what is allowed. Settings that need the data (the
target class against the number of classes, `num_poison` against the
unlabeled nodes) are checked by `attacks.validate` once the graph is loaded,
before any training.

Field names follow the project's conventions: `learning_rate` (never
`lr`), `n_layers`, `epochs`, `weight_decay`.
"""

from __future__ import annotations

import ml_collections

from common import schema
from graph_attacks import attacks as attacks_lib
from graph_attacks import crossba
from graph_attacks import defences
from graph_attacks import victims
from graph_attacks.data import csbm

DATA_SOURCES = ('csbm', 'planetoid')

_POS = schema.integer(1)
_LR = schema.number(0.0, open_low=True)
_NONNEG = schema.number(0.0)
_RATE = schema.probability(open_high=True)  # probabilities of dropping
_COS = schema.number(-1.0, 1.0)
_PAIR_RATE = schema.sequence(_RATE, length=2)  # (view 1, view 2)

# Every field of the experiment config and its check.
FIELDS: dict = {
  'name': schema.string(),
  'seeds': schema.seeds(),
  'data': {
    'source': schema.choice(DATA_SOURCES),
    'csbm_config': schema.choice(
      tuple(c.name for c in csbm.CSBM.BUILDER_CONFIGS)
    ),
    'data_dir': schema.string(),
    'name': schema.string(),
  },
  'attacks': schema.names(attacks_lib.ATTACKS),
  'paradigms': schema.names(victims.PARADIGMS),
  'defences': schema.names(defences.DEFENCES),
  'defence_paradigms': schema.names(victims.PARADIGMS, empty_ok=True),
  'project_dim': schema.integer(0),
  'project_epochs': _POS,
  'pretrain': {
    'hidden': _POS,
    'n_layers': _POS,
    'epochs': _POS,
    'learning_rate': _LR,
  },
  'attack': {
    'target': schema.integer(0),
    'num_poison': _POS,
    'baseline_size': schema.integer(2),
    'outer_size': _POS,
    'surrogate_hidden': _POS,
    'surrogate_epochs': _POS,
    'generator': {
      'epochs': _POS,
      'inner_steps': _POS,
      'learning_rate': _LR,
      'lambda_homo': _NONNEG,
      'homo_tau': _COS,
      'detector_hidden': _POS,
      'lambda_detector': _NONNEG,
      'detector_steps': schema.integer(0),
      'lambda_embed': _NONNEG,
    },
    'cpgba': {
      'size': schema.integer(2),
      'num_triggers': _POS,
      'per_node': _POS,
      'max_subgraphs': schema.optional(_POS),
      'homo_hidden': _POS,
      'attach_threshold': _COS,
      'label_centers': _POS,
      'epochs': _POS,
      'inner_steps': _POS,
      'learning_rate': _LR,
      'prompt_learning_rate': _LR,
      'lambda_homo': _NONNEG,
      'homo_tau': _COS,
      'select_every': schema.integer(0),
      'select_epochs': _POS,
    },
    'crossba': {
      'size': schema.integer(2),
      'poison_rate': schema.number(0.0, 1.0, open_low=True),
      'selection': schema.choice(crossba.SELECTIONS),
      'epochs': _POS,
      'trigger_steps': schema.integer(0),
      'gnn_steps': _POS,
      'trigger_learning_rate': _LR,
      'gnn_learning_rate': _LR,
      'reg_trigger_n': _RATE,
      'reg_trigger_f': _RATE,
      'reg_gnn': _RATE,
      'reg_dormant': _NONNEG,
    },
  },
  'victim': {
    'seed_offset': schema.integer(0),
    'hidden': _POS,
    'dropout': _RATE,
    'epochs': _POS,
    'learning_rate': _LR,
    'weight_decay': _NONNEG,
    'grace': {
      'hidden': _POS,
      'proj': _POS,
      'epochs': _POS,
      'learning_rate': _LR,
      'weight_decay': _NONNEG,
      'p_edge': _PAIR_RATE,
      'p_feat': _PAIR_RATE,
      'tau': schema.number(0.0, open_low=True),
      'probe_epochs': _POS,
      'probe_learning_rate': _LR,
      'probe_weight_decay': _NONNEG,
    },
    'prompt': {'epochs': _POS, 'learning_rate': _LR, 'weight_decay': _NONNEG},
    'rigbd': {'passes': _POS, 'drop_rate': _RATE, 'retrain_epochs': _POS},
  },
  'defence': {
    'prune_threshold': _COS,
    'od_epochs': _POS,
    'od_percentile': schema.number(0.0, 100.0, open_low=True, open_high=True),
    'od_max_hidden': _POS,
  },
}


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks fields, types and ranges up front.

  Raises:
    common.schema.ConfigError: (a ValueError) naming the field, the value
      and what is allowed.
  """
  schema.validate(config, FIELDS, experiment='graph_attacks')
  for p in config.defence_paradigms:
    if p not in config.paradigms:
      raise schema.ConfigError(
        f'config.defence_paradigms: paradigm {p!r} is not in '
        f'config.paradigms {tuple(config.paradigms)}'
      )
  cb = config.attack.crossba
  if cb.reg_trigger_n + cb.reg_trigger_f >= 1.0:
    raise schema.ConfigError(
      'config.attack.crossba.reg_trigger_n + reg_trigger_f = '
      f'{cb.reg_trigger_n + cb.reg_trigger_f}: must be < 1 (the weight of '
      'the target term is 1 - r_n - r_f)'
    )
  if config.data.source == 'planetoid' and not config.data.data_dir:
    raise schema.ConfigError(
      "config.data.source='planetoid' needs config.data.data_dir (the folder "
      'of the ind.<name>.* files)'
    )
