"""Magnitude pruning of a delta: keep the top-alpha fraction of |delta|.

GraftLLM compresses embedding and LM-head deltas this way and stores the
kept entries sparsely: flat indices (the smallest unsigned dtype that fits)
and float16 values.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

VALUE_DTYPE = np.float16


class Sparse(NamedTuple):
  """Kept entries of a `shape` delta (row-major flat indices, ascending)."""

  indices: np.ndarray  # [k] uint16/uint32
  values: np.ndarray  # [k] float16
  shape: tuple[int, ...]


def check_alpha(alpha: float, field: str = 'alpha') -> float:
  """`alpha` if in (0, 1], else a ValueError naming `field`."""
  if isinstance(alpha, bool) or not (0.0 < float(alpha) <= 1.0):
    raise ValueError(f'{field}={alpha!r} is invalid; allowed: (0, 1].')
  return float(alpha)


def index_dtype(size: int):
  """uint16 for up to 2^16 entries, else uint32 (else uint64)."""
  if size <= 2**16:
    return np.uint16
  if size <= 2**32:
    return np.uint32
  return np.uint64


def magnitude_prune(delta, alpha: float) -> Sparse:
  """Keeps the `ceil(alpha * n)` entries of largest |delta| (ties: lowest
  index first).

  Args:
    delta: array of any shape.
    alpha: kept fraction in (0, 1].
  """
  check_alpha(alpha)
  d = np.asarray(delta, np.float32)
  flat = d.reshape(-1)
  k = max(1, math.ceil(alpha * flat.size))
  order = np.argsort(-np.abs(flat), kind='stable')[:k]
  idx = np.sort(order)
  return Sparse(
    idx.astype(index_dtype(flat.size)),
    flat[idx].astype(VALUE_DTYPE),
    tuple(d.shape),
  )


def densify(s: Sparse) -> np.ndarray:
  """The float32 dense delta with zeros outside the kept entries."""
  out = np.zeros(int(np.prod(s.shape)), np.float32)
  out[s.indices.astype(np.int64)] = s.values.astype(np.float32)
  return out.reshape(s.shape)
