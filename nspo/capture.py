"""Glue from a decoder LM to null-space statistics.

`collect` streams batches of general-task sequences through a capture
function (e.g. `common.models.capture_fn` over a `Transformer`, whose
`capture=` option returns per-layer inputs stacked `[L, B, T, ...]`) and
accumulates each site's uncentred covariance in one jitted step per batch.
No activations are kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from common import models
from nspo import covariance

# Which targeted kernels read which captured activation (see nspo.targets).
SITES = ('mlp_in', 'mlp_hidden', 'attn_in', 'attn_out')


def site_dims(
  config: models.LMConfig, sites: Iterable[str]
) -> dict[str, tuple[int, int]]:
  """`{site: (n_layers, d_in)}` of a `common.models` LM."""
  dims = {
    'mlp_in': config.d_model,
    'attn_in': config.d_model,
    'mlp_hidden': config.d_ff,
    'attn_out': config.n_heads * config.head_dim,
  }
  out = {}
  for s in sites:
    if s not in dims:
      raise ValueError(f'unknown capture site {s!r}; allowed: {SITES}.')
    out[s] = (config.n_layers, dims[s])
  return out


def collect(
  capture_fn: Callable[[Any, jax.Array, jax.Array], Mapping[str, jax.Array]],
  params: Any,
  batches: Iterable[tuple[np.ndarray, np.ndarray]],
  dims: Mapping[str, tuple[int, int]],
) -> tuple[covariance.CovarianceStats, dict[str, float]]:
  """Accumulates covariances over `batches`.

  Args:
    capture_fn: `(params, tokens [B, T], mask [B, T]) -> {site: [L, B, T,
      d]}`.
    params: model parameters.
    batches: `(tokens [B, T], mask [B, T])` pairs; masked tokens (padding)
      are not counted.
    dims: `{site: (L, d)}` (see `site_dims`).

  Returns:
    `(stats, info)` with `info = {'tokens', 'seconds', 'tokens_per_sec'}`
    (seconds exclude the first batch, which includes compilation).
  """

  @jax.jit
  def step(stats, params, tokens, mask):
    return covariance.accumulate(stats, capture_fn(params, tokens, mask), mask)

  stats = covariance.init_stats(dims)
  n_tokens, timed_tokens, seconds = 0, 0, 0.0
  for i, (tokens, mask) in enumerate(batches):
    t0 = time.perf_counter()
    stats = step(stats, params, tokens, mask)
    jax.block_until_ready(stats)
    n = int(np.asarray(mask).sum())
    n_tokens += n
    if i > 0:
      seconds += time.perf_counter() - t0
      timed_tokens += n
  if n_tokens == 0:
    raise ValueError('collect saw no (unmasked) tokens.')
  info = {
    'tokens': float(n_tokens),
    'seconds': seconds,
    'tokens_per_sec': timed_tokens / seconds if seconds > 0 else float('nan'),
  }
  return stats, info
