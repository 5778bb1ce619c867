"""JSON output for results: conversion of array scalars, atomic writes; JSONL
line reading with errors naming the file and line."""

from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any

import numpy as np


def to_jsonable(obj: Any, path: str = '') -> Any:
  """Converts a results object to plain JSON types.

  numpy and JAX scalars become Python numbers, arrays become nested lists,
  tuples become lists, `pathlib.Path`s strings, and `ConfigDict`s (anything
  with `to_dict()`) dicts. Non-finite floats are kept (Python's `json` reads
  `NaN`/`Infinity` back exactly).

  Args:
    obj: the object to convert.
    path: where `obj` sits in the enclosing object, for error messages.

  Returns:
    An object made of dict, list, str, int, float, bool and None.

  Raises:
    TypeError: a dict key is not a string, or a value has no JSON form; the
      message names its path (e.g. `summary.acc`).
  """
  where = path or '<root>'
  if obj is None or isinstance(obj, (bool, str)):
    return obj
  if isinstance(obj, int):
    return int(obj)
  if isinstance(obj, float):
    return float(obj)
  if isinstance(obj, np.generic):
    return obj.item()
  if isinstance(obj, pathlib.PurePath):
    return str(obj)
  if isinstance(obj, Mapping):
    out = {}
    for k, v in obj.items():
      if not isinstance(k, str):
        raise TypeError(
          f'to_jsonable: key {k!r} at {where} is a {type(k).__name__}; JSON '
          'object keys must be strings.'
        )
      out[k] = to_jsonable(v, f'{path}.{k}' if path else k)
    return out
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v, f'{path}[{i}]') for i, v in enumerate(obj)]
  if hasattr(obj, 'to_dict') and callable(obj.to_dict):
    return to_jsonable(obj.to_dict(), path)
  if hasattr(obj, '__array__'):  # np.ndarray, jax.Array
    arr = np.asarray(obj)
    if arr.dtype.kind not in 'biufU':
      raise TypeError(
        f'to_jsonable: array at {where} has dtype {arr.dtype}; only bool, '
        'integer, float and string arrays convert to JSON.'
      )
    return arr.tolist()
  raise TypeError(
    f'to_jsonable: value at {where} of type {type(obj).__name__} has no JSON '
    'form; allowed: dict, list, tuple, str, int, float, bool, None, numpy '
    'or JAX arrays and scalars.'
  )


def write_json(path: str | os.PathLike, obj: Any) -> Any:
  """Writes `obj` as indented JSON, atomically (temp file, then rename).

  A reader never sees a half-written file, and a crash mid-write leaves the
  previous version in place.

  Args:
    path: destination file; missing parent folders are created.
    obj: anything `to_jsonable` accepts.

  Returns:
    The converted object that was written.
  """
  path = pathlib.Path(path)
  data = to_jsonable(obj)
  text = json.dumps(data, indent=2)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', dir=path.parent)
  try:
    with os.fdopen(fd, 'w') as f:
      f.write(text + '\n')
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return data


def read_json(path: str | os.PathLike) -> Any:
  """Reads a JSON file, naming the file when it is missing or malformed."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'read_json: no such file: {path}')
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f'read_json: {path} is not valid JSON: {e}') from e


def iter_jsonl_objects(
  path: str | os.PathLike,
  *,
  kind: str = 'JSONL',
  error: type[Exception] = ValueError,
  allow_empty: bool = True,
) -> Iterator[tuple[int, dict[str, Any]]]:
  """Yields `(line number, object)` for each non-blank line of a JSONL file.

  The one JSONL line reader: format-specific loaders (chat SFT files,
  GSM8K, corpora) check their fields on top of it and name the same
  `<path>:<line>` in their errors.

  Args:
    path: the file.
    kind: what the file is, for messages (e.g. 'SFT', 'GSM8K JSONL').
    error: the exception class raised for a bad line (a ValueError).
    allow_empty: when False, a file with no records is an error.

  Raises:
    FileNotFoundError: no such file.
    error: `<path>:<n>: not valid JSON (...)`, `<path>:<n>: expected a JSON
      object, got <type>`, or `<path>: no records` when empty and not
      allowed.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no such {kind} file: {path}')
  found = False
  with open(path, encoding='utf-8') as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise error(f'{path}:{n}: not valid JSON ({e})') from None
      if not isinstance(row, dict):
        raise error(
          f'{path}:{n}: expected a JSON object, got {type(row).__name__}'
        )
      found = True
      yield n, row
  if not found and not allow_empty:
    raise error(f'{path}: the {kind} file holds no records (empty)')


def to_scalar(value: Any, name: str) -> float | int | bool:
  """Converts a 0-d array or number to a Python scalar.

  Raises:
    ValueError: `value` is not a scalar (names the metric and its shape).
  """
  arr = np.asarray(value)
  if arr.shape != ():
    raise ValueError(
      f'metric {name!r} has shape {arr.shape}; metrics must be scalars.'
    )
  if arr.dtype.kind not in 'biuf':
    raise ValueError(
      f'metric {name!r} has dtype {arr.dtype}; metrics must be numbers.'
    )
  return arr.item()


def is_finite_number(value: Any) -> bool:
  """True for ints and bools and for finite floats."""
  return not isinstance(value, float) or math.isfinite(value)
