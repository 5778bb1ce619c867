"""`make_optimizer(config)`: an optax chain from a dict / ConfigDict.

    tx = make_optimizer({
        'name': 'adamw', 'learning_rate': 3e-4,
        'schedule': 'warmup_cosine', 'warmup_steps': 100, 'total_steps': 2000,
        'weight_decay': 0.1, 'grad_clip_norm': 1.0,
        'frozen': ['embed/.*'],
    })

The chain is `clip_by_global_norm -> optimizer (with weight decay)`, and
with `frozen` patterns the whole chain is applied to the trainable
parameters only (`optax.multi_transform` with `set_to_zero()` for the
frozen ones; see `freeze.py`). Every key is validated: unknown keys, names
and settings that do not apply to the chosen optimizer raise a ValueError
that lists what is allowed.

Weight decay is decoupled (AdamW/Lion: `p -= lr * wd * p`) for `adamw` and
`lion`, and coupled L2 (`g += wd * p` before the optimizer, as PyTorch's
`weight_decay`) for `adam`, `sgd` and `rmsprop`. It applies to the leaves of
`weight_decay_mask`:

* `'default'`: every leaf with at least 2 dimensions whose path does not
  name a norm, a bias or an embedding (`DEFAULT_NO_DECAY_PATTERNS`);
* `'all'`: every leaf;
* a list of path regexes (see `paths.path_mask`): the leaves to decay.
"""

import math
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import optax

from common.optim import freeze as freeze_lib
from common.optim import paths

OPTIMIZERS = ('adamw', 'adam', 'sgd', 'lion', 'rmsprop')
SCHEDULES = ('constant', 'warmup_cosine', 'linear')
# Optimizer-specific settings each name accepts (passed to optax as is).
OPTIMIZER_SETTINGS = {
  'adamw': ('b1', 'b2', 'eps'),
  'adam': ('b1', 'b2', 'eps'),
  'sgd': ('momentum', 'nesterov'),
  'lion': ('b1', 'b2'),
  'rmsprop': ('decay', 'eps', 'momentum', 'nesterov', 'centered'),
}
_DECOUPLED_DECAY = ('adamw', 'lion')
COMMON_KEYS = (
  'name',
  'learning_rate',
  'schedule',
  'warmup_steps',
  'total_steps',
  'end_learning_rate_factor',
  'weight_decay',
  'weight_decay_mask',
  'grad_clip_norm',
  'frozen',
)
ALLOWED_KEYS = COMMON_KEYS + tuple(
  sorted({k for ks in OPTIMIZER_SETTINGS.values() for k in ks})
)
# Leaves never decayed by the default mask (re.search over the path,
# case-insensitive): norm layers and their scales, biases, embeddings.
DEFAULT_NO_DECAY_PATTERNS = (
  r'(?i)norm',
  r'(?i)(^|/)(ln|ln_\w+|ln\d+)/',
  r'(^|/)scale$',
  r'(^|/)(bias|b)$',
  r'(?i)embed',
  r'(^|/)(wte|wpe)(/|$)',
)


def default_weight_decay_mask(params: Any) -> Any:
  """True for leaves to decay: ndim >= 2 and no norm/bias/embedding path.

  Args:
    params: parameter pytree (dict, `nnx.State`, ...).

  Returns:
    Bool pytree with the structure of `params`.
  """
  excluded = paths.path_mask(
    params, DEFAULT_NO_DECAY_PATTERNS, match='search', allow_unmatched=True
  )
  return jax.tree.map(
    lambda p, ex: bool(np.ndim(p) >= 2 and not ex), params, excluded
  )


def _as_dict(config: Any) -> dict[str, Any]:
  if hasattr(config, 'to_dict'):  # ml_collections.ConfigDict
    return dict(config.to_dict())
  if isinstance(config, Mapping):
    return dict(config)
  raise ValueError(
    f'Optimizer config must be a dict or ConfigDict; got {type(config)}.'
  )


def _number(cfg, key, default=None, minimum=None, strict=False):
  value = cfg.get(key, default)
  if value is None:
    return None
  if isinstance(value, bool) or not isinstance(value, int | float):
    raise ValueError(f'Optimizer config {key}={value!r} must be a number.')
  if not math.isfinite(value) or (
    minimum is not None and (value <= minimum if strict else value < minimum)
  ):
    bound = f'> {minimum}' if strict else f'>= {minimum}'
    raise ValueError(f'Optimizer config {key}={value!r} must be {bound}.')
  return value


def make_schedule(config: Any) -> optax.Schedule:
  """Learning-rate schedule `step -> lr` from the same config.

  * `'constant'`: `learning_rate`, after an optional linear warmup from 0
    over `warmup_steps`.
  * `'warmup_cosine'`: linear warmup from 0 to `learning_rate` over
    `warmup_steps`, then cosine decay to `learning_rate *
    end_learning_rate_factor` at `total_steps` (counted from step 0).
  * `'linear'`: the same warmup, then linear decay to that end value at
    `total_steps`.
  """
  cfg = _as_dict(config)
  schedule = cfg.get('schedule', 'constant')
  if schedule not in SCHEDULES:
    raise ValueError(
      f'Unknown schedule {schedule!r}; allowed values: {", ".join(SCHEDULES)}.'
    )
  lr = _number(cfg, 'learning_rate', minimum=0.0, strict=True)
  if lr is None:
    raise ValueError('Optimizer config needs learning_rate (a number > 0).')
  warmup = int(_number(cfg, 'warmup_steps', 0, minimum=0))
  end_factor = _number(cfg, 'end_learning_rate_factor', 0.0, minimum=0.0)
  total = _number(cfg, 'total_steps', minimum=0)
  if schedule == 'constant':
    if warmup == 0:
      return optax.constant_schedule(lr)
    return optax.join_schedules(
      [
        optax.linear_schedule(0.0, lr, warmup),
        optax.constant_schedule(lr),
      ],
      [warmup],
    )
  if total is None or int(total) <= warmup:
    raise ValueError(
      f'schedule={schedule!r} needs total_steps > warmup_steps={warmup}; '
      f'got total_steps={total!r}.'
    )
  total = int(total)
  end = lr * end_factor
  if schedule == 'warmup_cosine':
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, total, end)
  return optax.join_schedules(
    [
      optax.linear_schedule(0.0, lr, warmup),
      optax.linear_schedule(lr, end, total - warmup),
    ],
    [warmup],
  )


def _decay_mask(spec):
  if spec == 'default':
    return default_weight_decay_mask
  if spec == 'all':
    return None
  if isinstance(spec, str):
    spec = [spec]
  if isinstance(spec, list | tuple) and spec:
    patterns = list(spec)
    return lambda params: paths.path_mask(params, patterns)
  raise ValueError(
    f"weight_decay_mask={spec!r}; allowed: 'default', 'all' or a non-empty "
    f'list of path regexes.'
  )


def make_optimizer(config: Any) -> optax.GradientTransformation:
  """Builds the optimizer described by `config` (module docstring).

  Args:
    config: dict or `ml_collections.ConfigDict` with keys from
      `ALLOWED_KEYS`: `name` (one of `OPTIMIZERS`) and `learning_rate` are
      required; `schedule` (`SCHEDULES`), `warmup_steps`, `total_steps`,
      `end_learning_rate_factor`, `weight_decay`, `weight_decay_mask`,
      `grad_clip_norm` (global norm; None disables), `frozen` (path
      regexes of parameters that never move), and the settings of the
      chosen optimizer (`OPTIMIZER_SETTINGS`, optax defaults otherwise).

  Returns:
    An `optax.GradientTransformation`.
  """
  cfg = _as_dict(config)
  unknown = sorted(set(cfg) - set(ALLOWED_KEYS))
  if unknown:
    raise ValueError(
      f'Unknown optimizer config key(s) {unknown}; allowed keys: '
      f'{", ".join(ALLOWED_KEYS)}.'
    )
  name = cfg.get('name')
  if name not in OPTIMIZERS:
    raise ValueError(
      f'Unknown optimizer name {name!r}; allowed values: '
      f'{", ".join(OPTIMIZERS)}.'
    )
  settings = {
    k: cfg[k]
    for k in ALLOWED_KEYS
    if k not in COMMON_KEYS and cfg.get(k) is not None
  }
  foreign = sorted(set(settings) - set(OPTIMIZER_SETTINGS[name]))
  if foreign:
    raise ValueError(
      f'Setting(s) {foreign} do not apply to {name!r}; {name} accepts: '
      f'{", ".join(OPTIMIZER_SETTINGS[name])}.'
    )
  schedule = make_schedule(cfg)
  weight_decay = _number(cfg, 'weight_decay', 0.0, minimum=0.0)
  mask = _decay_mask(cfg.get('weight_decay_mask', 'default'))
  clip = _number(cfg, 'grad_clip_norm', None, minimum=0.0, strict=True)

  if name == 'adamw':
    opt = optax.adamw(
      schedule, weight_decay=weight_decay, mask=mask, **settings
    )
  elif name == 'lion':
    opt = optax.lion(schedule, weight_decay=weight_decay, mask=mask, **settings)
  else:
    base = {'adam': optax.adam, 'sgd': optax.sgd, 'rmsprop': optax.rmsprop}
    opt = base[name](schedule, **settings)
    if weight_decay > 0:
      opt = optax.chain(optax.add_decayed_weights(weight_decay, mask), opt)
  parts = [opt] if clip is None else [optax.clip_by_global_norm(clip), opt]
  tx = optax.chain(*parts)

  frozen = cfg.get('frozen')
  if frozen:
    if isinstance(frozen, str):
      frozen = [frozen]
    patterns = list(frozen)
    tx = optax.multi_transform(
      {freeze_lib.TRAINABLE: tx, freeze_lib.FROZEN: optax.set_to_zero()},
      lambda params: freeze_lib.frozen_labels(params, patterns),
    )
  return tx
