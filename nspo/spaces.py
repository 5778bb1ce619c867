"""Null-space projectors per capture site and layer, and how to apply them.

A projector P (symmetric, idempotent, `[d, d]`) maps a Flax kernel update
u `[d_in, d_out]` to P u, whose effect on any protected input x is
x (P u) ≈ 0. Three equivalent representations, all stacked over layers:

* `DenseProjector(matrix [L, d, d])`: P itself.
* `ComplementProjector(basis [L, d, r])`: the kept (protected) directions
  U_keep; P = I - U_keep U_keepᵀ. Cheap when few directions are protected.
* `NullBasisProjector(basis [L, d, r])`: the null directions U_null;
  P = U_null U_nullᵀ. Cheap when the null space is small.

Layers of one site have different ranks; bases are zero-padded to the
largest rank, and zero columns contribute nothing. Each projector also
carries `null_dim [L]`, the dimension of each layer's null space.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from nspo import covariance
from nspo import rules as rules_lib

REPRESENTATIONS = ('auto', 'dense', 'complement', 'null_basis')


class DenseProjector(NamedTuple):
  """P as a matrix. matrix: `[L, d, d]`; null_dim: `[L]` int32."""

  matrix: jax.Array
  null_dim: jax.Array


class ComplementProjector(NamedTuple):
  """P = I - B Bᵀ. basis: `[L, d, r]` kept directions; null_dim: `[L]`."""

  basis: jax.Array
  null_dim: jax.Array


class NullBasisProjector(NamedTuple):
  """P = B Bᵀ. basis: `[L, d, r]` null directions; null_dim: `[L]`."""

  basis: jax.Array
  null_dim: jax.Array


Projector = DenseProjector | ComplementProjector | NullBasisProjector


_PROJECTOR_TYPES = (DenseProjector, ComplementProjector, NullBasisProjector)


def is_projector(x) -> bool:
  return isinstance(x, _PROJECTOR_TYPES)


def num_layers(p: Projector) -> int:
  return (p.matrix if isinstance(p, DenseProjector) else p.basis).shape[0]


def dim(p: Projector) -> int:
  return (p.matrix if isinstance(p, DenseProjector) else p.basis).shape[1]


def layer(p: Projector, index: int) -> Projector:
  """The projector of one layer, keeping a leading axis of size 1."""
  return jax.tree.map(lambda a: a[index : index + 1], p)


def apply(p: Projector, u: jax.Array) -> jax.Array:
  """P u for stacked updates.

  Args:
    p: projector over L layers.
    u: `[L, d, n]` updates (Flax kernels flattened to `(d_in, -1)`).

  Returns:
    `[L, d, n]` projected updates, computed in float32 and cast back to
    `u.dtype`.
  """
  hi = jax.lax.Precision.HIGHEST
  x = u.astype(jnp.float32)
  if isinstance(p, DenseProjector):
    y = jnp.einsum('lij,ljn->lin', p.matrix, x, precision=hi)
  else:
    coef = jnp.einsum('ldr,ldn->lrn', p.basis, x, precision=hi)
    back = jnp.einsum('ldr,lrn->ldn', p.basis, coef, precision=hi)
    y = x - back if isinstance(p, ComplementProjector) else back
  return y.astype(u.dtype)


def to_dense(p: Projector) -> jax.Array:
  """The `[L, d, d]` matrix of any representation."""
  eye = jnp.broadcast_to(jnp.eye(dim(p)), (num_layers(p), dim(p), dim(p)))
  return apply(p, eye.astype(jnp.float32))


def _eig_layers(m: np.ndarray, site: str) -> tuple[np.ndarray, np.ndarray]:
  lams, vecs = [], []
  for i, c in enumerate(m):
    if not np.isfinite(c).all():
      raise ValueError(f'site {site!r}, layer {i}: covariance is not finite.')
    lam, v = np.linalg.eigh(0.5 * (c + c.T))
    lams.append(lam)
    vecs.append(v)
  return np.stack(lams), np.stack(vecs)


def _choose(representation: str, d: int, r_keep: int, r_null: int) -> str:
  if representation != 'auto':
    return representation
  # Per update entry, dense costs d multiply-adds and a basis of rank r
  # costs 2r in two thin matmuls, which run at a lower rate than one square
  # one; weighting them 4r keeps `auto` dense unless r <= d / 4.
  costs = {'dense': d, 'complement': 4 * r_keep, 'null_basis': 4 * r_null}
  return min(costs, key=lambda k: (costs[k], k != 'dense'))


def from_moments(
  moments: Mapping[str, np.ndarray],
  rule: rules_lib.Threshold,
  representation: str = 'auto',
  allow_frozen: bool = False,
) -> dict[str, Projector]:
  """Builds projectors from per-site second moments.

  Args:
    moments: `{site: [L, d, d]}` symmetric PSD matrices (E[x xᵀ] or sums).
    rule: threshold rule picking the protected directions.
    representation: one of `REPRESENTATIONS`; `auto` picks a basis when
      its rank r (padded to the largest layer's) is at most d / 4, else
      dense.
    allow_frozen: if False (default), a layer whose null space is empty
      (every direction protected, so every update would be zeroed) raises;
      if True it gets P = 0 like the released NSPO code.

  Returns:
    `{site: Projector}` stacked over layers, float32.

  Raises:
    ValueError: unknown representation, bad shapes, non-finite input, or an
      empty null space (naming site and layer).
  """
  if representation not in REPRESENTATIONS:
    raise ValueError(
      f'unknown representation {representation!r}; allowed: {REPRESENTATIONS}.'
    )
  out: dict[str, Projector] = {}
  for site, m in moments.items():
    m = np.asarray(m, np.float64)
    if m.ndim != 3 or m.shape[1] != m.shape[2]:
      raise ValueError(
        f'site {site!r}: moments must be [L, d, d], got {m.shape}.'
      )
    lam, vecs = _eig_layers(m, site)
    keep = np.stack([rule.keep_mask(x) for x in lam])  # [L, d]
    null_dim = (~keep).sum(axis=1)
    for i, n in enumerate(null_dim):
      if n == 0 and not allow_frozen:
        raise ValueError(
          f'site {site!r}, layer {i}: the {rule.rule} rule '
          f'(value {rule.value}) protects all {m.shape[1]} directions, so '
          'the projection would remove every update. Loosen the threshold '
          'or pass allow_frozen=True to freeze this layer.'
        )
    d = m.shape[1]
    r_keep = int(keep.sum(axis=1).max())
    r_null = int(null_dim.max())
    kind = _choose(representation, d, r_keep, r_null)
    # Bases keep at least one (zero) column: zero-size arrays cannot be
    # checkpointed, and a zero column contributes nothing.
    r_keep, r_null = max(r_keep, 1), max(r_null, 1)
    nd = jnp.asarray(null_dim, jnp.int32)
    if kind == 'dense':
      free = (~keep).astype(np.float64)
      p = np.einsum('lij,lj,lkj->lik', vecs, free, vecs)
      out[site] = DenseProjector(jnp.asarray(p, jnp.float32), nd)
    elif kind == 'complement':
      # Kept directions are the last ones (largest eigenvalues).
      b = vecs[:, :, d - r_keep :] * keep[:, None, d - r_keep :]
      out[site] = ComplementProjector(jnp.asarray(b, jnp.float32), nd)
    else:
      b = vecs[:, :, :r_null] * (~keep)[:, None, :r_null]
      out[site] = NullBasisProjector(jnp.asarray(b, jnp.float32), nd)
  return out


def estimate(
  stats: covariance.CovarianceStats,
  rule: rules_lib.Threshold,
  representation: str = 'auto',
  allow_frozen: bool = False,
) -> dict[str, Projector]:
  """Projectors from accumulated covariance statistics (normalised by N).

  See `from_moments` for the arguments; `stats` comes from
  `covariance.accumulate`.
  """
  return from_moments(
    covariance.second_moments(stats), rule, representation, allow_frozen
  )


_KINDS = {
  'dense': DenseProjector,
  'complement': ComplementProjector,
  'null_basis': NullBasisProjector,
}


def to_tree(spaces: Mapping[str, Projector]) -> dict[str, dict[str, jax.Array]]:
  """Plain nested dict of arrays (what orbax stores without a target)."""
  out = {}
  for site, p in spaces.items():
    kind = next(k for k, cls in _KINDS.items() if isinstance(p, cls))
    out[site] = {kind: p[0], 'null_dim': p.null_dim}
  return out


def from_tree(
  tree: Mapping[str, Mapping[str, jax.Array]],
) -> dict[str, Projector]:
  """Inverse of `to_tree`."""
  out = {}
  for site, entry in tree.items():
    kinds = [k for k in entry if k in _KINDS]
    if len(kinds) != 1 or 'null_dim' not in entry:
      raise ValueError(
        f'site {site!r}: expected one of {sorted(_KINDS)} and null_dim, got '
        f'keys {sorted(entry)}.'
      )
    out[site] = _KINDS[kinds[0]](
      jnp.asarray(entry[kinds[0]]), jnp.asarray(entry['null_dim'])
    )
  return out


def save(directory: str, spaces: Mapping[str, Projector]) -> None:
  """Writes projectors to `directory` with orbax (must not exist yet)."""
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(directory, to_tree(spaces))


def load(directory: str) -> dict[str, Projector]:
  """Reads projectors written by `save`."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'no saved null spaces at {directory!r}.')
  with ocp.StandardCheckpointer() as ckpt:
    return from_tree(ckpt.restore(os.path.abspath(directory)))
