"""The experiment's config: field checks (before any work) and the cost model.

``validate_config`` rejects unknown fields and bad values with an error that
names the field (``config.simulation.cluster_sizes[1]=0: must be an int >=
1``), so a typo fails at once instead of after minutes of simulation.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from collections.abc import Mapping

from dhp import baselines as bl
from dhp import cost_model as cm
from dhp import lengths as ln
from dhp import model as model_lib

PRESETS = {'flexsp': cm.flexsp_preset, 'linear': cm.linear_preset}
# config.train.model fields; `n_layers` is ModelConfig.num_layers.
MODEL_FIELDS = (
  'vocab_size',
  'd_model',
  'num_heads',
  'n_layers',
  'd_ff',
  'max_len',
)

Check = Callable[[object], str | None]  # value -> problem, or None if fine


def _int(lo=None, hi=None) -> Check:
  def check(v):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
      return f'must be an int, got {type(v).__name__}'
    if lo is not None and v < lo:
      return f'must be an int >= {lo}'
    if hi is not None and v > hi:
      return f'must be an int <= {hi}'
    return None

  return check


def _float(lo=None, strict=False) -> Check:
  def check(v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
      return f'must be a number, got {type(v).__name__}'
    if not math.isfinite(v):
      return 'must be finite'
    if lo is not None and (v <= lo if strict else v < lo):
      return f'must be {">" if strict else ">="} {lo}'
    return None

  return check


def _bool(v):
  return None if isinstance(v, bool) else 'must be True or False'


def _choice(options) -> Check:
  def check(v):
    return None if v in options else f'must be one of {sorted(options)}'

  return check


def _optional(inner: Check) -> Check:
  return lambda v: None if v is None else inner(v)


_DIST = _choice(ln.GENERATORS)
_SIZE = _int(1)

# section -> field -> check; list fields are (item check,) tuples.
SCHEMA: dict[str, dict[str, Check | tuple[Check]]] = {
  'simulation': {
    'distributions': (_DIST,),
    'cluster_sizes': (_SIZE,),
    'batch_size': _int(1),
    'num_batches': _int(1),
    'capacity': _int(1),
    'num_heads': _int(1),
    'utilisation_devices': _int(1),
    'utilisation_distribution': _DIST,
  },
  'sweep': {
    'enabled': _bool,
    'distribution': _DIST,
    'cluster_sizes': (_SIZE,),
    'eff_half': (_float(0),),
    'inter_node_gbps': (_float(0, strict=True),),
    'ring_step_ms': (_float(0),),
  },
  'latency': {
    'cluster_sizes': (_SIZE,),
    'batch_sizes': (_SIZE,),
    'repeats': _int(1),
  },
  'gap': {
    'instances': _int(1),
    'max_sequences': _int(2, bl.MAX_EXACT_SEQUENCES),
    'max_devices': _int(2),
    'capacity': _int(1),
  },
  'train': {
    'enabled': _bool,
    'num_devices': _optional(_int(1)),
    'steps': _int(1),
    'compile_warmup_steps': _int(0),
    'batch_size': _int(1),
    'len_mu': _float(),
    'len_sigma': _float(0),
    'max_len': _int(4),  # the runtime check's sequences have >= 4 tokens
    'capacity': _int(1),
    'cost_a1': _float(0),
    'cost_a2': _float(0),
    'learning_rate': _float(0, strict=True),
    'fast_compile': _bool,
    'model': None,  # checked against MODEL_FIELDS
  },
}
TOP_LEVEL = ('name', 'seed', 'cost', *SCHEMA)


def _fail(field, value, problem):
  raise ValueError(f'config.{field}={value!r}: {problem}.')


def _keys(section: Mapping, field: str, known) -> None:
  if not hasattr(section, 'keys'):
    _fail(field, section, 'must be a ConfigDict or dict')
  unknown = sorted(set(section.keys()) - set(known))
  if unknown:
    raise ValueError(
      f'config{"." + field if field else ""} has unknown field(s) '
      f'{unknown}; known: {sorted(known)}.'
    )
  missing = sorted(set(known) - set(section.keys()))
  if missing:
    raise ValueError(
      f'config{"." + field if field else ""} is missing field(s) {missing}.'
    )


def _check_value(field, value, check):
  if isinstance(check, tuple):
    if isinstance(value, (str, bytes)) or not hasattr(value, '__len__'):
      _fail(field, value, 'must be a list')
    if len(value) == 0:
      _fail(field, value, 'must not be empty')
    for i, item in enumerate(value):
      problem = check[0](item)
      if problem:
        _fail(f'{field}[{i}]', item, problem)
  else:
    problem = check(value)
    if problem:
      _fail(field, value, problem)


def validate_config(config, num_available_devices=None) -> None:
  """Raises ValueError naming the first unknown field or bad value.

  Args:
    config: the experiment's ``ConfigDict`` (see ``configs/default.py``).
    num_available_devices: devices the runtime check may use (default:
      ``len(jax.devices())``, asked only when ``train.enabled``).
  """
  _keys(config, '', TOP_LEVEL)
  if not isinstance(config.name, str) or not config.name:
    _fail('name', config.name, 'must be a non-empty string')
  _check_value('seed', config.seed, _int(0))
  cost_from_config(config.cost)
  for section, fields in SCHEMA.items():
    _keys(config[section], section, fields)
    for name, check in fields.items():
      if check is not None:
        _check_value(f'{section}.{name}', config[section][name], check)
  model = config.train.model
  _keys(model, 'train.model', MODEL_FIELDS)
  for name in MODEL_FIELDS:
    _check_value(f'train.model.{name}', model[name], _int(1))
  try:
    model_config(config.train)
  except ValueError as e:
    raise ValueError(f'config.train.model: {e}') from None
  tc = config.train
  if tc.enabled:
    if tc.max_len > tc.model.max_len:
      _fail(
        'train.max_len',
        tc.max_len,
        f'must be <= config.train.model.max_len={tc.model.max_len}',
      )
    if num_available_devices is None:
      import jax  # only the runtime check needs devices

      num_available_devices = len(jax.devices())
    if tc.num_devices is not None and tc.num_devices > num_available_devices:
      _fail(
        'train.num_devices',
        tc.num_devices,
        f'only {num_available_devices} devices exist (set jax_num_cpu_devices)',
      )


def model_config(train_config) -> model_lib.ModelConfig:
  """The runtime check's ModelConfig from ``config.train.model``."""
  fields = dict(train_config.model)
  fields['num_layers'] = fields.pop('n_layers')
  return model_lib.ModelConfig(**fields)


def cost_from_config(cfg) -> cm.CostModel:
  """CostModel from config.cost: a preset name plus field overrides."""
  _keys(cfg, 'cost', ('preset', 'overrides'))
  if cfg.preset not in PRESETS:
    raise ValueError(
      f'config.cost.preset={cfg.preset!r}; known: {sorted(PRESETS)}.'
    )
  overrides = dict(cfg.get('overrides', {}))
  fields = {f.name for f in dataclasses.fields(cm.CostModel)}
  unknown = set(overrides) - fields
  if unknown:
    raise ValueError(
      f'config.cost.overrides has unknown fields {sorted(unknown)}; '
      f'known: {sorted(fields)}.'
    )
  if 'bandwidth_table' in overrides:
    overrides['bandwidth_table'] = tuple(
      tuple(x) for x in overrides['bandwidth_table']
    )
  try:
    return PRESETS[cfg.preset](**overrides)
  except ValueError as e:
    raise ValueError(f'config.cost.overrides: {e}') from None
