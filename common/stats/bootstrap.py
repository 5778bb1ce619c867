"""Paired bootstrap intervals over seeds.

An experiment runs each arm on the same seeds (the same warm start and data
per seed), so the per-seed differences `d_s = method_s - baseline_s` are
paired. `paired_effect` reports their mean and a percentile bootstrap
interval of that mean: resample the `S` differences with replacement
`num_resamples` times, take each resample's mean, and read the
`(1 - confidence) / 2` and `(1 + confidence) / 2` quantiles. An effect is
*shown* only where the interval excludes zero and at least `MIN_SEEDS`
seeds stand behind it.

With few seeds the bootstrap distribution is coarse (3 seeds give at most
10 distinct resample means), so the interval is only as good as the seeds
behind it; the report says how many there were.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import numpy as np

# Fewer paired seeds than this never show an effect (one or two seeds give
# an interval that is a point or the two differences themselves).
MIN_SEEDS = 3


class Effect(NamedTuple):
  """A paired method-minus-baseline effect.

  Attributes:
    mean: mean of the per-seed differences.
    low: lower end of the bootstrap interval.
    high: upper end.
    confidence: the interval's level (e.g. 0.95).
    num_seeds: number of paired seeds.
  """

  mean: float
  low: float
  high: float
  confidence: float
  num_seeds: int

  @property
  def shown(self) -> bool:
    """True when the interval excludes zero (strictly) over >= `MIN_SEEDS`."""
    if self.num_seeds < MIN_SEEDS:
      return False
    return self.low > 0.0 or self.high < 0.0

  @property
  def verdict(self) -> str:
    """'shown', or why not."""
    if self.num_seeds < MIN_SEEDS:
      return f'not shown: fewer than {MIN_SEEDS} seeds'
    return 'shown' if self.shown else 'not shown: the interval holds 0'

  def as_entry(
    self, name: str, method: str, baseline: str, paper: str | float = ''
  ) -> dict[str, Any]:
    """The `effects` entry of `metrics.json` (common/report/README.md)."""
    return {
      'name': name,
      'method': method,
      'baseline': baseline,
      'mean': self.mean,
      'low': self.low,
      'high': self.high,
      'confidence': self.confidence,
      'num_seeds': self.num_seeds,
      'paper': paper,
    }

  def describe(self, digits: int = 3) -> str:
    """E.g. `+0.042 [+0.010, +0.071] (95%, 3 seeds; shown)`."""
    verdict = self.verdict
    f = f'{{:+.{digits}f}}'
    return (
      f'{f.format(self.mean)} [{f.format(self.low)}, {f.format(self.high)}] '
      f'({round(100 * self.confidence)}%, {self.num_seeds} seeds; {verdict})'
    )


def _as_vector(values: Sequence[float], name: str) -> np.ndarray:
  arr = np.asarray(values, np.float64)
  if arr.ndim != 1 or arr.size == 0:
    raise ValueError(
      f'{name} must be a non-empty 1-D sequence of per-seed values; got '
      f'shape {arr.shape}.'
    )
  if not np.all(np.isfinite(arr)):
    bad = np.nonzero(~np.isfinite(arr))[0].tolist()
    raise ValueError(f'{name} has non-finite values at seeds {bad}.')
  return arr


def _check_level(confidence: float, num_resamples: int) -> None:
  if not 0.0 < confidence < 1.0:
    raise ValueError(f'confidence={confidence!r} must be in (0, 1).')
  if not isinstance(num_resamples, int) or num_resamples < 1:
    raise ValueError(f'num_resamples={num_resamples!r} must be an int >= 1.')


def bootstrap_mean_interval(
  values: Sequence[float],
  *,
  confidence: float = 0.95,
  num_resamples: int = 10_000,
  seed: int = 0,
) -> tuple[float, float]:
  """Percentile bootstrap interval of the mean of `values` `[S]`.

  Args:
    values: per-seed values.
    confidence: the interval's level in (0, 1).
    num_resamples: bootstrap resamples.
    seed: the resampling seed (the interval is a pure function of it).

  Returns:
    `(low, high)`.
  """
  arr = _as_vector(values, 'values')
  _check_level(confidence, num_resamples)
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, arr.size, size=(num_resamples, arr.size))
  means = arr[idx].mean(axis=1)
  alpha = (1.0 - confidence) / 2.0
  low, high = np.quantile(means, [alpha, 1.0 - alpha])
  return float(low), float(high)


def paired_effect(
  method: Sequence[float],
  baseline: Sequence[float],
  *,
  confidence: float = 0.95,
  num_resamples: int = 10_000,
  seed: int = 0,
) -> Effect:
  """Mean of `method - baseline` over paired seeds, with its interval.

  Args:
    method: `[S]` the method's per-seed results.
    baseline: `[S]` the baseline's, on the same seeds in the same order.
    confidence: the interval's level in (0, 1).
    num_resamples: bootstrap resamples.
    seed: the resampling seed.

  Returns:
    An `Effect`.

  Raises:
    ValueError: the two have different lengths, are empty, or hold NaN/inf
      (the message names which and where).
  """
  m = _as_vector(method, 'method')
  b = _as_vector(baseline, 'baseline')
  if m.shape != b.shape:
    raise ValueError(
      f'method has {m.size} seeds but baseline has {b.size}; paired '
      'results need the same seeds in the same order.'
    )
  diff = m - b
  low, high = bootstrap_mean_interval(
    diff, confidence=confidence, num_resamples=num_resamples, seed=seed
  )
  return Effect(float(diff.mean()), low, high, confidence, int(diff.size))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof=1; 0 for one value)."""
  arr = _as_vector(values, 'values')
  std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
  return float(arr.mean()), std if math.isfinite(std) else 0.0
