"""Declared config fields, checked before any work starts.

An experiment declares its config as a nested dict of checks::

  FIELDS = {
    'seeds': schema.seeds(),
    'sft': {
      'steps': schema.integer(1),
      'learning_rate': schema.number(0.0, open_low=True),
      'mode': schema.choice(('greedy', 'sample')),
    },
  }
  schema.validate(config, FIELDS, experiment='tpaw')

`validate` rejects unknown fields (with a "did you mean" suggestion and the
list of allowed fields), missing fields, and values of the wrong type or
range. Every error is a `ConfigError` (a `ValueError`) naming the full dotted
path, the value and what is allowed, so a user can fix the command line
without reading the config module.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import ml_collections

Check = Callable[[str, Any], None]


class ConfigError(ValueError):
  """A config field is unknown, missing, or has a value that is not allowed."""


def fail(field: str, value: Any, allowed: str):
  """Raises a `ConfigError` for `config.<field>=<value>`."""
  raise ConfigError(f'config.{field}={value!r} is invalid; allowed: {allowed}')


def _is_int(value) -> bool:
  return not isinstance(value, bool) and isinstance(value, int)


def integer(minimum: int | None = None, maximum: int | None = None) -> Check:
  """An int (not a bool) in `[minimum, maximum]`; either bound may be None."""
  if minimum is not None and maximum is not None:
    allowed = f'an integer in [{minimum}, {maximum}]'
  elif minimum is not None:
    allowed = f'an integer >= {minimum}'
  elif maximum is not None:
    allowed = f'an integer <= {maximum}'
  else:
    allowed = 'an integer'

  def check(field, value):
    if not _is_int(value):
      fail(field, value, allowed)
    if minimum is not None and value < minimum:
      fail(field, value, allowed)
    if maximum is not None and value > maximum:
      fail(field, value, allowed)

  return check


def number(
  low: float = -math.inf,
  high: float = math.inf,
  *,
  open_low: bool = False,
  open_high: bool = False,
) -> Check:
  """A finite int or float in the interval; `open_*` excludes that end."""
  lo = '(' if open_low or low == -math.inf else '['
  hi = ')' if open_high or high == math.inf else ']'
  allowed = f'a finite number in {lo}{low}, {high}{hi}'

  def check(field, value):
    if isinstance(value, bool) or not isinstance(value, int | float):
      fail(field, value, allowed)
    if not math.isfinite(value):
      fail(field, value, allowed)
    if value < low or (open_low and value == low):
      fail(field, value, allowed)
    if value > high or (open_high and value == high):
      fail(field, value, allowed)

  return check


def probability(*, open_low: bool = False, open_high: bool = False) -> Check:
  """A number in [0, 1] (ends excluded on request)."""
  return number(0.0, 1.0, open_low=open_low, open_high=open_high)


def boolean() -> Check:
  """True or False."""

  def check(field, value):
    if not isinstance(value, bool):
      fail(field, value, 'True or False')

  return check


def string(*, non_empty: bool = False) -> Check:
  """A str (non-empty on request)."""
  allowed = 'a non-empty string' if non_empty else 'a string'

  def check(field, value):
    if not isinstance(value, str) or (non_empty and not value):
      fail(field, value, allowed)

  return check


def choice(options: Sequence[Any]) -> Check:
  """One of `options`."""
  options = tuple(options)

  def check(field, value):
    if value not in options:
      fail(field, value, f'one of {options}')

  return check


def optional(inner: Check) -> Check:
  """None, or a value `inner` accepts."""

  def check(field, value):
    if value is None:
      return
    try:
      inner(field, value)
    except ConfigError as e:
      raise ConfigError(f'{e} (or None)') from None

  return check


def sequence(
  inner: Check,
  *,
  length: int | None = None,
  min_length: int = 0,
  unique: bool = False,
) -> Check:
  """A tuple or list whose items `inner` accepts (checked as `field[i]`)."""
  if length is not None:
    allowed = f'a sequence of exactly {length} items'
  elif min_length:
    allowed = f'a sequence of at least {min_length} items'
  else:
    allowed = 'a sequence (tuple or list)'
  if unique:
    allowed += ' without repeats'

  def check(field, value):
    if isinstance(value, str) or not isinstance(value, tuple | list):
      fail(field, value, allowed)
    if length is not None and len(value) != length:
      fail(field, value, allowed)
    if len(value) < min_length:
      fail(field, value, allowed)
    for i, item in enumerate(value):
      inner(f'{field}[{i}]', item)
    if unique and len(set(value)) != len(value):
      fail(field, value, allowed)

  return check


def names(options: Sequence[str], *, empty_ok: bool = False) -> Check:
  """A tuple of distinct names from `options` (e.g. the arms to run)."""
  options = tuple(options)

  def check(field, value):
    if isinstance(value, str) or not isinstance(value, tuple | list):
      fail(field, value, f'a tuple of names from {options}')
    if not value and not empty_ok:
      fail(field, value, f'a non-empty tuple of names from {options}')
    for v in value:
      if v not in options:
        raise ConfigError(
          f'config.{field}: unknown name {v!r}; allowed: {options}'
        )
    if len(set(value)) != len(value):
      fail(field, value, 'names without repeats')

  return check


def seeds() -> Check:
  """A non-empty tuple of distinct integer seeds >= 0."""
  return sequence(integer(0), min_length=1, unique=True)


def anything() -> Check:
  """Any value (a free-form field, e.g. a dict passed through to a library)."""
  return lambda field, value: None


def dataclass_kwargs(cls: type, **fixed) -> Check:
  """A dict of keyword arguments that build a valid `cls` (a dataclass).

  The keys must be fields of `cls` (a subset: the rest keep their
  defaults); `cls(**fixed, **value)` runs the dataclass's own validation,
  whose `ValueError`/`TypeError` becomes a `ConfigError` naming the field.

  Args:
    cls: the dataclass.
    **fixed: arguments the experiment sets itself (e.g. a seed).
  """
  names_ = sorted(
    f.name for f in dataclasses.fields(cls) if f.name not in fixed
  )

  def check(field, value):
    if hasattr(value, 'to_dict'):
      value = value.to_dict()
    if not isinstance(value, Mapping):
      fail(field, value, f'a dict of {cls.__name__} fields')
    for key in sorted(value):
      if key not in names_:
        raise ConfigError(
          _unknown_message(cls.__name__, f'{field}.', key, names_)
        )
    try:
      cls(**fixed, **value)
    except (TypeError, ValueError) as e:
      raise ConfigError(f'config.{field}: {e}') from None

  return check


def _as_dict(config) -> dict:
  if isinstance(config, ml_collections.ConfigDict):
    return config.to_dict()
  if isinstance(config, Mapping):
    return dict(config)
  raise ConfigError(f'expected a ConfigDict of fields, got {type(config)}')


def _unknown_message(experiment: str, path: str, key: str, allowed) -> str:
  where = f'config.{path[:-1]}' if path else 'config'
  close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
  hint = f'; did you mean {path}{close[0]}?' if close else ''
  return (
    f"unknown field '{path}{key}' in the {experiment} config{hint}; "
    f'the fields of {where} are: {", ".join(sorted(allowed))}'
  )


def _check_tree(experiment: str, spec: Mapping, values: Mapping, path: str):
  for key in sorted(set(values) - set(spec)):
    raise ConfigError(_unknown_message(experiment, path, key, spec))
  for key in sorted(set(spec) - set(values)):
    raise ConfigError(f'config.{path}{key} is missing from the config')
  for key, check in spec.items():
    value = values[key]
    if hasattr(value, 'to_dict'):  # a ConfigDict inside a plain dict
      value = value.to_dict()
    if isinstance(check, Mapping):
      if not isinstance(value, Mapping):
        fail(path + key, value, 'a ConfigDict of fields')
      _check_tree(experiment, check, value, f'{path}{key}.')
    else:
      check(path + key, value)


def validate(
  config: ml_collections.ConfigDict | Mapping,
  fields: Mapping[str, Any],
  *,
  experiment: str = 'experiment',
) -> None:
  """Checks that `config` has exactly `fields`, each with an allowed value.

  Args:
    config: the resolved config.
    fields: nested dict: field name -> a check (from this module) or a nested
      dict of the sub-config's fields.
    experiment: its name, used in messages.

  Raises:
    ConfigError: naming the dotted field, the value and what is allowed.
  """
  _check_tree(experiment, fields, _as_dict(config), '')
