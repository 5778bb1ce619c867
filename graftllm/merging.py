"""Parameter-merging baselines on dense task deltas.

All take `deltas`: a list of `{path: array}` (one per task) and return one
merged `{path: array}` to add to the base model (`delta.add_delta`).

* Task Arithmetic (Ilharco et al. 2023): `lam * sum_i delta_i`.
* TIES (Yadav et al. 2023): per task keep the top-`density` fraction of
  |delta| (per tensor); elect each entry's sign as the sign of the sum of
  the kept values; average the kept values that agree with it (disjoint
  mean); scale by `lam`.
* DARE (Yu et al. 2024): drop each entry with probability `p`, rescale the
  rest by `1 / (1 - p)`, then Task Arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence

import numpy as np


def _check(deltas):
  if not deltas:
    raise ValueError('merging needs at least one delta.')
  keys = set(deltas[0])
  for i, d in enumerate(deltas[1:], 1):
    if set(d) != keys:
      odd = sorted(set(d) ^ keys)[0]
      raise ValueError(f'delta {i} and delta 0 differ in tensor {odd!r}.')


def task_arithmetic(
  deltas: Sequence[Mapping[str, np.ndarray]], lam: float = 1.0
) -> dict[str, np.ndarray]:
  """`lam * sum_i delta_i`."""
  _check(deltas)
  return {
    k: lam * np.sum([np.asarray(d[k], np.float32) for d in deltas], 0)
    for k in deltas[0]
  }


def _trim(x: np.ndarray, density: float) -> np.ndarray:
  flat = np.abs(x).reshape(-1)
  k = int(np.ceil(density * flat.size))
  if k >= flat.size:
    return x
  thresh = np.partition(flat, flat.size - k)[flat.size - k]
  return np.where(np.abs(x) >= thresh, x, 0.0).astype(np.float32)


def ties(
  deltas: Sequence[Mapping[str, np.ndarray]],
  density: float = 0.2,
  lam: float = 1.0,
) -> dict[str, np.ndarray]:
  """TIES-merging (trim, elect sign, disjoint mean)."""
  _check(deltas)
  if not 0.0 < density <= 1.0:
    raise ValueError(f'density={density!r}; allowed: (0, 1].')
  out = {}
  for k in deltas[0]:
    stack = np.stack(
      [_trim(np.asarray(d[k], np.float32), density) for d in deltas]
    )
    sign = np.sign(stack.sum(0))
    agree = (np.sign(stack) == sign[None]) & (stack != 0)
    num = np.sum(np.where(agree, stack, 0.0), 0)
    cnt = np.maximum(np.sum(agree, 0), 1)
    out[k] = (lam * num / cnt).astype(np.float32)
  return out


def dare(
  deltas: Sequence[Mapping[str, np.ndarray]],
  p: float = 0.5,
  lam: float = 1.0,
  seed: int = 0,
) -> dict[str, np.ndarray]:
  """DARE drop-and-rescale, then Task Arithmetic."""
  _check(deltas)
  if not 0.0 <= p < 1.0:
    raise ValueError(f'p={p!r}; allowed: [0, 1).')
  rng = np.random.default_rng(seed)
  dropped = []
  for d in deltas:
    dd = {}
    for k in sorted(d):
      x = np.asarray(d[k], np.float32)
      keep = rng.random(x.shape) >= p
      dd[k] = np.where(keep, x / (1.0 - p), 0.0).astype(np.float32)
    dropped.append(dd)
  return task_arithmetic(dropped, lam)
