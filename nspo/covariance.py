"""Streaming, jitted accumulation of uncentred layer-input covariances.

For each capture site (the input of one family of linear layers, e.g.
`mlp_in` for gate/up projections) and each layer l we accumulate

  C_l = sum_tokens x xᵀ      (uncentred, fp32, pad tokens masked out)

over batches of captured activations, without storing them. The statistics
are a `CovarianceStats` pytree, so they can be jitted over, sharded and
checkpointed like any other state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from common import rl


class CovarianceStats(NamedTuple):
  """Running sums of outer products.

  Attributes:
    sums: `{site: [L, d, d]}` float32 sums of x xᵀ over counted tokens.
    counts: `{site: []}` float32 number of counted tokens.
  """

  sums: dict[str, jax.Array]
  counts: dict[str, jax.Array]


def init_stats(dims: Mapping[str, tuple[int, int]]) -> CovarianceStats:
  """Zero statistics.

  Args:
    dims: `{site: (num_layers, d)}`.

  Returns:
    CovarianceStats with `[L, d, d]` zero sums and zero counts.
  """
  sums, counts = {}, {}
  for site, shape in dims.items():
    if len(shape) != 2 or min(shape) < 1:
      raise ValueError(
        f'site {site!r}: dims must be (num_layers, d) with both >= 1, '
        f'got {shape!r}.'
      )
    num_layers, d = shape
    sums[site] = jnp.zeros((num_layers, d, d), jnp.float32)
    counts[site] = jnp.zeros((), jnp.float32)
  return CovarianceStats(sums, counts)


def accumulate(
  stats: CovarianceStats,
  captures: Mapping[str, jax.Array],
  mask: jax.Array | None = None,
) -> CovarianceStats:
  """Adds one batch of captured layer inputs. Jit-able.

  Args:
    stats: running statistics.
    captures: `{site: [L, B, T, d]}` layer inputs; sites not in `stats` are
      ignored (a model may capture more than is being estimated).
    mask: optional `[B, T]` with 1 on real tokens, 0 on padding.

  Returns:
    Updated statistics.
  """
  sums, counts = dict(stats.sums), dict(stats.counts)
  for site, total in stats.sums.items():
    if site not in captures:
      raise KeyError(
        f'site {site!r} is being estimated but was not captured; '
        f'captured sites: {sorted(captures)}.'
      )
    x = jnp.asarray(captures[site], jnp.float32)
    num_layers, d = total.shape[0], total.shape[-1]
    # Shape contracts (chex, static under jit): rl.ShapeError names the site.
    chex.assert_shape(
      x,
      (num_layers, None, None, d),
      custom_message=f'site {site!r}: expected captures of shape '
      f'[{num_layers}, B, T, {d}], got {x.shape}.',
      exception_type=rl.ShapeError,
    )
    if mask is None:
      m = jnp.ones(x.shape[1:3], jnp.float32)
    else:
      chex.assert_shape(
        mask,
        x.shape[1:3],
        custom_message=f'mask shape {jnp.shape(mask)} does not match site '
        f'{site!r} batch shape {x.shape[1:3]}.',
        exception_type=rl.ShapeError,
      )
      m = jnp.asarray(mask, jnp.float32)
    xm = x * m[None, :, :, None]
    sums[site] = total + jnp.einsum(
      'lbti,lbtj->lij', xm, xm, precision=jax.lax.Precision.HIGHEST
    )
    counts[site] = stats.counts[site] + jnp.sum(m)
  return CovarianceStats(sums, counts)


def merge(a: CovarianceStats, b: CovarianceStats) -> CovarianceStats:
  """Sum of two statistics over the same sites (e.g. from two hosts)."""
  if set(a.sums) != set(b.sums):
    raise ValueError(
      f'cannot merge statistics over different sites: {sorted(a.sums)} vs '
      f'{sorted(b.sums)}.'
    )
  return jax.tree.map(jnp.add, a, b)


def second_moments(stats: CovarianceStats) -> dict[str, np.ndarray]:
  """Normalised second moments E[x xᵀ] = C / N per site, as float64 numpy.

  Raises:
    ValueError: a site saw no tokens, or its sums are not finite (naming the
      site and the first bad layer).
  """
  out = {}
  for site, total in stats.sums.items():
    n = float(stats.counts[site])
    if n <= 0:
      raise ValueError(f'site {site!r}: no tokens were accumulated.')
    c = np.asarray(total, np.float64)
    finite = np.isfinite(c).reshape(c.shape[0], -1).all(axis=1)
    if not finite.all():
      bad = int(np.argmin(finite))
      raise ValueError(
        f'site {site!r}, layer {bad}: covariance has non-finite entries '
        '(the captured activations overflowed or were NaN).'
      )
    out[site] = c / n
  return out
