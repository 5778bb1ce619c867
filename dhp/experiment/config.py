"""The experiment's config: field checks (before any work) and the cost model.

``validate_config`` rejects unknown fields and bad values with an error that
names the field (``config.simulation.cluster_sizes[1]=0 is invalid; allowed:
an integer >= 1``; the checks are ``common.schema``'s), so a typo fails at
once instead of after minutes of simulation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from common import schema
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

_DIST = schema.choice(ln.GENERATORS)
_SIZE = schema.integer(1)


def _list(check: schema.Check) -> schema.Check:
  return schema.sequence(check, min_length=1)


# section -> field -> check (common.schema).
SCHEMA: dict[str, dict[str, Any]] = {
  'simulation': {
    'distributions': _list(_DIST),
    'cluster_sizes': _list(_SIZE),
    'batch_size': schema.integer(1),
    'num_batches': schema.integer(1),
    'capacity': schema.integer(1),
    'num_heads': schema.integer(1),
    'utilisation_devices': schema.integer(1),
    'utilisation_distribution': _DIST,
  },
  'sweep': {
    'enabled': schema.boolean(),
    'distribution': _DIST,
    'cluster_sizes': _list(_SIZE),
    'eff_half': _list(schema.number(0.0)),
    'inter_node_gbps': _list(schema.number(0.0, open_low=True)),
    'ring_step_ms': _list(schema.number(0.0)),
  },
  'latency': {
    'cluster_sizes': _list(_SIZE),
    'batch_sizes': _list(_SIZE),
    'repeats': schema.integer(1),
  },
  'gap': {
    'instances': schema.integer(1),
    'max_sequences': schema.integer(2, bl.MAX_EXACT_SEQUENCES),
    'max_devices': schema.integer(4),
    'min_utilisation': schema.number(0.0, open_low=True),
    'max_utilisation': schema.number(0.0, open_low=True),
  },
  'calibration': {
    'enabled': schema.boolean(),
    'degrees': _list(schema.integer(1)),
    'lengths': _list(schema.integer(4)),
    'repeats': schema.integer(1),
    'cluster_sizes': _list(_SIZE),
  },
  'train': {
    'enabled': schema.boolean(),
    'num_devices': schema.optional(schema.integer(1)),
    'steps': schema.integer(1),
    'compile_warmup_steps': schema.integer(0),
    'batch_size': schema.integer(1),
    'len_mu': schema.number(),
    'len_sigma': schema.number(0.0),
    'max_len': schema.integer(4),  # the runtime check's sequences: >= 4
    'capacity': schema.integer(1),
    'cost_a1': schema.number(0.0),
    'cost_a2': schema.number(0.0),
    'cost_eff_half': schema.number(0.0),
    'learning_rate': schema.number(0.0, open_low=True),
    'fast_compile': schema.boolean(),
    'model': {f: schema.integer(1) for f in MODEL_FIELDS},
  },
}
FIELDS = {
  'name': schema.string(non_empty=True),
  'seed': schema.integer(0),
  'cost': schema.anything(),  # checked by cost_from_config
  **SCHEMA,
}


def validate_config(config, num_available_devices=None) -> None:
  """Raises `common.schema.ConfigError` naming the first bad field.

  Args:
    config: the experiment's ``ConfigDict`` (see ``configs/default.py``).
    num_available_devices: devices the runtime check may use (default:
      ``len(jax.devices())``, asked only when ``train.enabled``).
  """
  schema.validate(config, FIELDS, experiment='dhp')
  cost_from_config(config.cost)
  gap = config.gap
  if not gap.min_utilisation <= gap.max_utilisation <= 1:
    schema.fail(
      'gap.max_utilisation',
      gap.max_utilisation,
      f'in [config.gap.min_utilisation={gap.min_utilisation}, 1]',
    )
  try:
    model_config(config.train)
  except ValueError as e:
    raise schema.ConfigError(f'config.train.model: {e}') from None
  cal = config.calibration
  if cal.enabled:
    if len(cal.degrees) * len(cal.lengths) < 3:
      schema.fail(
        'calibration.lengths',
        list(cal.lengths),
        'at least 3 (degree, length) points in all (3 parameters)',
      )
    if num_available_devices is None:
      import jax  # only the runtime stages need devices

      num_available_devices = len(jax.devices())
    if max(cal.degrees) > num_available_devices:
      schema.fail(
        'calibration.degrees',
        list(cal.degrees),
        f'degrees up to the {num_available_devices} devices that exist',
      )
  tc = config.train
  if tc.enabled:
    if tc.max_len > tc.model.max_len:
      schema.fail(
        'train.max_len',
        tc.max_len,
        f'at most config.train.model.max_len={tc.model.max_len}',
      )
    if num_available_devices is None:
      import jax  # only the runtime check needs devices

      num_available_devices = len(jax.devices())
    if tc.num_devices is not None and tc.num_devices > num_available_devices:
      schema.fail(
        'train.num_devices',
        tc.num_devices,
        f'at most the {num_available_devices} devices that exist (set '
        'jax_num_cpu_devices)',
      )


def model_config(train_config) -> model_lib.ModelConfig:
  """The runtime check's ModelConfig from ``config.train.model``."""
  fields = dict(train_config.model)
  fields['num_layers'] = fields.pop('n_layers')
  return model_lib.ModelConfig(**fields)


def cost_from_config(cfg) -> cm.CostModel:
  """CostModel from config.cost: a preset name plus field overrides."""
  fields = {'preset': schema.choice(sorted(PRESETS))}
  if 'overrides' in cfg:
    fields['overrides'] = schema.anything()
  schema.validate({'cost': cfg}, {'cost': fields}, experiment='dhp')
  overrides = dict(cfg.get('overrides', {}))
  fields = {f.name for f in dataclasses.fields(cm.CostModel)}
  unknown = set(overrides) - fields
  if unknown:
    raise schema.ConfigError(
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
    raise schema.ConfigError(f'config.cost.overrides: {e}') from None
