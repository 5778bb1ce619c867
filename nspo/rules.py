"""Eigenvalue threshold rules: which directions of a covariance to protect.

Given the eigenvalues λ (ascending) of a layer's input second moment
C = E[x xᵀ], a rule returns a boolean *keep* mask: the protected directions
(large λ, i.e. directions the general-task inputs occupy). The remaining
directions span the null space where updates are allowed. Every rule keeps
a top-k set, so kept directions are always the last k eigenvectors.

| rule         | null (free) directions              | used by           |
| ------------ | ----------------------------------- | ----------------- |
| `relative`   | λ < α · λ_max                       | NSPO, AlphaEdit*  |
| `absolute`   | λ < τ                               | AlphaEdit         |
| `energy`     | all but the top-r holding ε of Σλ   | GPM               |
| `min_ratio`  | λ <= a · λ_min                      | Adam-NSCL         |
"""

from __future__ import annotations

import dataclasses

import numpy as np

RULES = ('relative', 'absolute', 'energy', 'min_ratio')


@dataclasses.dataclass(frozen=True)
class Threshold:
  """An eigenvalue threshold rule.

  Attributes:
    rule: one of `RULES`.
    value: α (relative, in (0, 1]), τ (absolute, > 0), ε (energy, in
      (0, 1]) or a (min_ratio, >= 1).
  """

  rule: str
  value: float

  def __post_init__(self):
    if self.rule not in RULES:
      raise ValueError(
        f'unknown threshold rule {self.rule!r}; allowed: {RULES}.'
      )
    v = float(self.value)
    ok = {
      'relative': 0.0 < v <= 1.0,
      'absolute': v > 0.0,
      'energy': 0.0 < v <= 1.0,
      'min_ratio': v >= 1.0,
    }[self.rule]
    if not (ok and np.isfinite(v)):
      allowed = {
        'relative': '0 < alpha <= 1',
        'absolute': 'tau > 0',
        'energy': '0 < eps <= 1',
        'min_ratio': 'a >= 1',
      }[self.rule]
      raise ValueError(
        f'threshold {self.rule} value {self.value!r} is invalid; need '
        f'{allowed}.'
      )

  def keep_mask(self, eigvals: np.ndarray) -> np.ndarray:
    """Protected directions.

    Args:
      eigvals: `[d]` eigenvalues in ascending order (of a PSD matrix; small
        negative round-off is treated as 0).

    Returns:
      `[d]` bool, True for kept (protected) directions.
    """
    lam = np.maximum(np.asarray(eigvals, np.float64), 0.0)
    lam_max = lam[-1]
    if self.rule == 'relative':
      return lam >= self.value * lam_max
    if self.rule == 'absolute':
      return lam >= self.value
    if self.rule == 'energy':
      total = lam.sum()
      if total <= 0:
        return np.zeros(lam.shape, bool)
      # Cumulative energy from the largest eigenvalue down.
      frac = np.cumsum(lam[::-1]) / total
      rank = int(np.searchsorted(frac, self.value * (1 - 1e-12)) + 1)
      rank = min(rank, lam.size)
      keep = np.zeros(lam.shape, bool)
      keep[lam.size - rank :] = True
      return keep
    # min_ratio: eigenvalues at fp32 round-off level count as zero.
    floor = lam_max * lam.size * np.finfo(np.float32).eps
    lam_min = max(lam[0], floor)
    return lam > self.value * lam_min


def relative(alpha: float) -> Threshold:
  """NSPO/AlphaEdit rule: null where λ < alpha · λ_max."""
  return Threshold('relative', alpha)


def absolute(tau: float) -> Threshold:
  """AlphaEdit rule: null where λ < tau (on E[x xᵀ], not the raw sum)."""
  return Threshold('absolute', tau)


def energy(eps: float) -> Threshold:
  """GPM rule: keep the fewest top directions holding eps of the energy."""
  return Threshold('energy', eps)


def min_ratio(a: float) -> Threshold:
  """Adam-NSCL rule: null where λ <= a · λ_min."""
  return Threshold('min_ratio', a)
