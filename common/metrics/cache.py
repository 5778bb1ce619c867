"""A per-unit result cache keyed by the config that produced each result.

An experiment made of independent units (a seed, an attack, a method arm)
stores each unit's result so that a rerun of the same config skips it:

    cache = ResultCache(workdir / 'units', config)
    res = cache.get_or_compute('seed0_gta', lambda: run_attack(...))

A result is stored as `<root>/<unit>.json` holding `{'config_hash', 'config',
'result'}`. It is reused only when the stored hash equals the hash of the
current config, so a changed setting recomputes instead of silently serving
old numbers; a file that is not valid JSON (a crash mid-write cannot produce
one: writes are atomic, but a hand edit can) is an error naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
from collections.abc import Callable
from typing import Any

from common.metrics import jsonio

_UNIT = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.=-]*')


def config_hash(config: Any) -> str:
  """A stable hex digest of a config (ConfigDict, dataclass dict, mapping).

  Keys are sorted, so field order does not matter; any value change does.
  """
  blob = json.dumps(jsonio.to_jsonable(config), sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


class ResultCache:
  """Stores JSON results per unit name under `root`, keyed by a config hash.

  Args:
    root: the folder for the unit files (created on first write).
    config: the config the results depend on (anything `to_jsonable` takes:
      a `ConfigDict`, a dict). Pass only what the unit results depend on.
  """

  def __init__(self, root: str | os.PathLike, config: Any):
    self.root = pathlib.Path(root)
    self.config = jsonio.to_jsonable(config)
    self.key = config_hash(self.config)

  def path(self, unit: str) -> pathlib.Path:
    if not isinstance(unit, str) or not _UNIT.fullmatch(unit):
      raise ValueError(
        f'ResultCache: unit name {unit!r} must match {_UNIT.pattern} (it '
        'becomes a file name).'
      )
    return self.root / f'{unit}.json'

  def get(self, unit: str) -> Any | None:
    """The stored result of `unit` for this config, or None.

    Raises:
      ValueError: the file exists but is not a cache entry (names it).
    """
    path = self.path(unit)
    if not path.exists():
      return None
    entry = jsonio.read_json(path)
    if not isinstance(entry, dict) or not {'config_hash', 'result'} <= set(
      entry
    ):
      raise ValueError(
        f'ResultCache: {path} is not a result-cache entry (expected keys '
        "'config_hash', 'config', 'result'); delete it to recompute."
      )
    if entry['config_hash'] != self.key:
      return None
    return entry['result']

  def put(self, unit: str, result: Any) -> Any:
    """Stores `result` (JSON-convertible) atomically; returns its JSON form."""
    entry = jsonio.write_json(
      self.path(unit),
      {'config_hash': self.key, 'config': self.config, 'result': result},
    )
    return entry['result']

  def get_or_compute(self, unit: str, compute: Callable[[], Any]) -> Any:
    """The cached result of `unit`, or `compute()` stored and returned."""
    cached = self.get(unit)
    if cached is not None:
      return cached
    return self.put(unit, compute())
