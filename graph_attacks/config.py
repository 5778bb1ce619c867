"""The experiment config: its fields, and validation before any work.

`validate_config(config)` checks that the config has exactly the fields of
`FIELDS` (an unknown or misspelt field, e.g. the old `victim.lr`, is an
error that lists the allowed ones) and that every value has the right type
and range. It raises a `ValueError` naming the field, the value and what
is allowed. Settings that need the data (the target class against the
number of classes, `num_poison` against the unlabeled nodes) are checked by
`attacks.validate` once the graph is loaded, before any training.

Field names follow the project's conventions: `learning_rate` (never
`lr`), `n_layers`, `epochs`, `weight_decay`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import ml_collections

from graph_attacks import attacks as attacks_lib
from graph_attacks import defences
from graph_attacks import victims
from graph_attacks.data import csbm

Check = Callable[[str, Any], None]
DATA_SOURCES = ('csbm', 'planetoid')


def _fail(field: str, value: Any, allowed: str):
  raise ValueError(f'config.{field}={value!r} is invalid; allowed: {allowed}')


def _int(minimum: int) -> Check:
  def check(field, value):
    if isinstance(value, bool) or not isinstance(value, int):
      _fail(field, value, f'an integer >= {minimum}')
    if value < minimum:
      _fail(field, value, f'an integer >= {minimum}')

  return check


def _optional_int(minimum: int) -> Check:
  inner = _int(minimum)

  def check(field, value):
    if value is not None:
      try:
        inner(field, value)
      except ValueError:
        _fail(field, value, f'None or an integer >= {minimum}')

  return check


def _float(
  low: float, high: float = math.inf, *, open_low=False, open_high=True
):
  lo = '(' if open_low else '['
  hi = ')' if open_high else ']'
  allowed = f'a number in {lo}{low}, {high}{hi}'

  def check(field, value):
    if isinstance(value, bool) or not isinstance(value, int | float):
      _fail(field, value, allowed)
    if not math.isfinite(value):
      _fail(field, value, allowed)
    if value < low or (open_low and value == low):
      _fail(field, value, allowed)
    if value > high or (open_high and value == high):
      _fail(field, value, allowed)

  return check


def _pair(inner: Check) -> Check:
  def check(field, value):
    if not isinstance(value, tuple | list) or len(value) != 2:
      _fail(field, value, 'a pair (view 1, view 2)')
    for i, v in enumerate(value):
      inner(f'{field}[{i}]', v)

  return check


def _str(field, value):
  if not isinstance(value, str):
    _fail(field, value, 'a string')


def _choice(options) -> Check:
  def check(field, value):
    if value not in options:
      _fail(field, value, f'one of {tuple(options)}')

  return check


def _names(options, *, empty_ok: bool = False) -> Check:
  def check(field, value):
    if not isinstance(value, tuple | list):
      _fail(field, value, f'a tuple of names from {tuple(options)}')
    if not value and not empty_ok:
      _fail(field, value, f'a non-empty tuple of names from {tuple(options)}')
    for v in value:
      if v not in options:
        raise ValueError(
          f'config.{field}: unknown name {v!r}; allowed: {tuple(options)}'
        )
    if len(set(value)) != len(value):
      _fail(field, value, 'names without repeats')

  return check


def _seeds(field, value):
  if not isinstance(value, tuple | list) or not value:
    _fail(field, value, 'a non-empty tuple of integer seeds >= 0')
  for i, v in enumerate(value):
    _int(0)(f'{field}[{i}]', v)
  if len(set(value)) != len(value):
    _fail(field, value, 'seeds without repeats')


_POS = _int(1)
_LR = _float(0.0, open_low=True)
_NONNEG = _float(0.0)
_RATE = _float(0.0, 1.0)  # probabilities of dropping: [0, 1)
_COS = _float(-1.0, 1.0, open_high=False)

# Every field of the experiment config and its check.
FIELDS: dict[str, Any] = {
  'name': _str,
  'seeds': _seeds,
  'data': {
    'source': _choice(DATA_SOURCES),
    'csbm_config': _choice(tuple(c.name for c in csbm.CSBM.BUILDER_CONFIGS)),
    'data_dir': _str,
    'name': _str,
  },
  'attacks': _names(attacks_lib.ATTACKS),
  'paradigms': _names(victims.PARADIGMS),
  'defences': _names(defences.DEFENCES),
  'defence_paradigms': _names(victims.PARADIGMS, empty_ok=True),
  'project_dim': _int(0),
  'project_epochs': _POS,
  'pretrain': {
    'hidden': _POS,
    'n_layers': _POS,
    'epochs': _POS,
    'learning_rate': _LR,
  },
  'attack': {
    'target': _int(0),
    'num_poison': _POS,
    'baseline_size': _int(2),
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
      'detector_steps': _int(0),
    },
    'cpgba': {
      'size': _int(2),
      'num_triggers': _POS,
      'per_node': _POS,
      'max_subgraphs': _optional_int(1),
      'homo_hidden': _POS,
      'attach_threshold': _COS,
      'label_centers': _POS,
      'epochs': _POS,
      'inner_steps': _POS,
      'learning_rate': _LR,
      'prompt_learning_rate': _LR,
      'lambda_homo': _NONNEG,
      'homo_tau': _COS,
    },
  },
  'victim': {
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
      'p_edge': _pair(_RATE),
      'p_feat': _pair(_RATE),
      'tau': _float(0.0, open_low=True),
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
    'od_percentile': _float(0.0, 100.0, open_low=True),
  },
}


def _as_dict(config) -> dict:
  if isinstance(config, ml_collections.ConfigDict):
    return config.to_dict()
  return dict(config)


def _check_tree(spec: dict, values: dict, prefix: str):
  unknown = sorted(set(values) - set(spec))
  if unknown:
    where = f'config.{prefix[:-1]}' if prefix else 'config'
    raise ValueError(
      f'config.{prefix}{unknown[0]} is not a field of the graph_attacks '
      f'config; allowed in {where}: {", ".join(sorted(spec))}'
    )
  missing = sorted(set(spec) - set(values))
  if missing:
    raise ValueError(f'config.{prefix}{missing[0]} is missing')
  for key, check in spec.items():
    value = values[key]
    if isinstance(check, dict):
      if not isinstance(value, dict):
        _fail(prefix + key, value, 'a ConfigDict of fields')
      _check_tree(check, value, f'{prefix}{key}.')
    else:
      check(prefix + key, value)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks fields, types and ranges up front.

  Raises:
    ValueError: naming the field, the value and what is allowed.
  """
  _check_tree(FIELDS, _as_dict(config), '')
  for p in config.defence_paradigms:
    if p not in config.paradigms:
      raise ValueError(
        f'config.defence_paradigms: paradigm {p!r} is not in '
        f'config.paradigms {tuple(config.paradigms)}'
      )
  if config.data.source == 'planetoid' and not config.data.data_dir:
    raise ValueError(
      "config.data.source='planetoid' needs config.data.data_dir (the folder "
      'of the ind.<name>.* files)'
    )
