"""Truncated SVD of a delta with the explained-variance rank rule.

A kernel in the project's layout `K [d_in, d_out]` (`y = x @ K`) is
factored as

    K ~= V diag(S) U^T,   V [d_in, r], S [r], U [d_out, r],

so `x @ K ~= ((x @ V) * S) @ U^T` (GraftLLM's `U Sigma V^T` on the
transposed, HF-layout weight). The rank rule is the smallest `k` with

    sum_{i <= k} sigma_i^2 >= beta * sum_i sigma_i^2,   beta in (0, 1].
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np


class Factors(NamedTuple):
  """`K ~= V diag(S) U^T` (float32 numpy)."""

  v: np.ndarray  # [d_in, r]
  s: np.ndarray  # [r]
  u: np.ndarray  # [d_out, r]


def check_beta(beta: float, field: str = 'beta') -> float:
  """`beta` if in (0, 1], else a ValueError naming `field`."""
  if isinstance(beta, bool) or not (0.0 < float(beta) <= 1.0):
    raise ValueError(f'{field}={beta!r} is invalid; allowed: (0, 1].')
  return float(beta)


def variance_rank(s, beta: float) -> int:
  """Smallest `k` with `sum_{i<=k} s_i^2 >= beta * sum s_i^2`.

  Args:
    s: `[n]` singular values, descending.
    beta: explained-variance fraction in (0, 1].

  Returns:
    k in `[1, n]` (1 for an all-zero spectrum).
  """
  check_beta(beta)
  e = np.cumsum(np.asarray(s, np.float64) ** 2)
  if e.size == 0:
    raise ValueError('variance_rank: empty spectrum.')
  if e[-1] <= 0:
    return 1
  k = int(np.searchsorted(e, beta * e[-1], side='left')) + 1
  return min(k, e.size)


def svd(kernel) -> Factors:
  """Full (thin) SVD of `kernel [d_in, d_out]` in float32."""
  k = jnp.asarray(kernel, jnp.float32)
  if k.ndim != 2:
    raise ValueError(f'svd needs a 2-D kernel, got shape {k.shape}.')
  a, s, bt = jnp.linalg.svd(k, full_matrices=False)
  return Factors(np.asarray(a), np.asarray(s), np.asarray(bt).T)


def truncated_svd(
  kernel, beta: float | None = None, rank: int | None = None
) -> Factors:
  """Rank-`r` factors of `kernel`: `r = rank`, or the beta rule.

  Raises:
    ValueError: neither/both of beta and rank, beta outside (0, 1], or rank
      outside `[1, min(d_in, d_out)]`.
  """
  if (beta is None) == (rank is None):
    raise ValueError('truncated_svd: give exactly one of beta and rank.')
  f = svd(kernel)
  n = f.s.size
  if rank is not None:
    if isinstance(rank, bool) or int(rank) != rank or not 1 <= rank <= n:
      raise ValueError(
        f'rank={rank!r} is invalid for a {tuple(np.shape(kernel))} kernel; '
        f'allowed: an integer in [1, {n}] (min(d_in, d_out)).'
      )
    r = int(rank)
  else:
    r = variance_rank(f.s, beta)
  return Factors(f.v[:, :r], f.s[:r], f.u[:, :r])


def dense(f: Factors) -> np.ndarray:
  """`V diag(S) U^T` `[d_in, d_out]`."""
  return (f.v * f.s[None, :]) @ f.u.T
