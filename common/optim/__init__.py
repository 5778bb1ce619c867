"""Optimizers from config and parameter masks by path.

`make_optimizer(config)` builds an optax chain (optimizer, schedule, weight
decay with a default no-decay mask, global-norm clipping, frozen
parameters). `path_mask(params, patterns)` selects leaves by regex over
'/'-joined paths; `freeze` / `with_frozen` keep selected leaves fixed with
`optax.set_to_zero()`. See README.md in this directory.
"""

from common.optim.factory import ALLOWED_KEYS
from common.optim.factory import DEFAULT_NO_DECAY_PATTERNS
from common.optim.factory import OPTIMIZER_SETTINGS
from common.optim.factory import OPTIMIZERS
from common.optim.factory import SCHEDULES
from common.optim.factory import default_weight_decay_mask
from common.optim.factory import make_optimizer
from common.optim.factory import make_schedule
from common.optim.freeze import freeze
from common.optim.freeze import frozen_labels
from common.optim.freeze import with_frozen
from common.optim.paths import MATCH_MODES
from common.optim.paths import LeafTarget
from common.optim.paths import leaf_paths
from common.optim.paths import path_labels
from common.optim.paths import path_mask
from common.optim.paths import path_str
from common.optim.paths import resolve_targets

__all__ = [
  'ALLOWED_KEYS',
  'DEFAULT_NO_DECAY_PATTERNS',
  'LeafTarget',
  'MATCH_MODES',
  'OPTIMIZERS',
  'OPTIMIZER_SETTINGS',
  'SCHEDULES',
  'default_weight_decay_mask',
  'freeze',
  'frozen_labels',
  'leaf_paths',
  'make_optimizer',
  'make_schedule',
  'path_labels',
  'path_mask',
  'path_str',
  'resolve_targets',
  'with_frozen',
]
