"""K-means (k-means++ init, Lloyd iterations) and poisoned-node selection."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _sq_dists(x, c):
  return (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]


@functools.partial(jax.jit, static_argnames=('k', 'iters'))
def kmeans(x: jax.Array, k: int, key: jax.Array, iters: int = 50):
  """Lloyd's k-means with k-means++ seeding.

  Args:
    x: points `[P, D]` (P >= k).
    k: number of clusters.
    key: PRNG key for the seeding.
    iters: Lloyd iterations.

  Returns:
    (centroids `[k, D]`, assignment int `[P]`).
  """
  p = x.shape[0]
  k0, key = jax.random.split(key)
  first = x[jax.random.randint(k0, (), 0, p)]
  cents = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)

  def seed_step(i, carry):
    cents, key = carry
    key, sub = jax.random.split(key)
    d = jnp.min(
      jnp.where(jnp.arange(k)[None, :] < i, _sq_dists(x, cents), jnp.inf),
      axis=1,
    )
    d = jnp.maximum(d, 0.0)
    probs = jnp.where(d.sum() > 0, d / jnp.maximum(d.sum(), 1e-30), 1.0 / p)
    idx = jax.random.choice(sub, p, p=probs)
    return cents.at[i].set(x[idx]), key

  cents, _ = jax.lax.fori_loop(1, k, seed_step, (cents, key))

  def lloyd(cents, _):
    assign = jnp.argmin(_sq_dists(x, cents), axis=1)
    onehot = jax.nn.one_hot(assign, k, dtype=x.dtype)
    counts = onehot.sum(0)
    new = (onehot.T @ x) / jnp.maximum(counts, 1.0)[:, None]
    return jnp.where(counts[:, None] > 0, new, cents), None

  cents, _ = jax.lax.scan(lloyd, cents, None, iters)
  return cents, jnp.argmin(_sq_dists(x, cents), axis=1)


def max_normalize(v: np.ndarray) -> np.ndarray:
  """v / max(v) (0 if max is 0)."""
  m = np.max(v)
  return v / m if m > 0 else np.zeros_like(v, dtype=np.float64)


def cluster_degree_selection(
  embeddings: np.ndarray,
  degrees: np.ndarray,
  fit_idx: np.ndarray,
  candidates: np.ndarray,
  num_select: int,
  num_clusters: int,
  *,
  dis_weight: float = 0.0,
  seed: int = 0,
) -> np.ndarray:
  """UGBA-style selection: nodes near their cluster centre, low degree.

  K-means is fitted on `embeddings[fit_idx]`; each candidate scores
  maxnorm(dist to its centre) + dis_weight * maxnorm(degree) and the
  `num_select` smallest scores are chosen.

  Returns:
    int `[num_select]` node ids from `candidates`.
  """
  if num_select > len(candidates):
    raise ValueError(
      f'cannot select {num_select} poisoned nodes from {len(candidates)} '
      'unlabeled candidates'
    )
  cents, _ = kmeans(
    jnp.asarray(embeddings[fit_idx]), num_clusters, jax.random.key(seed)
  )
  d = np.asarray(_sq_dists(jnp.asarray(embeddings[candidates]), cents))
  dist = np.sqrt(np.maximum(d.min(1), 0.0))
  score = max_normalize(dist) + dis_weight * max_normalize(
    degrees[candidates].astype(np.float64)
  )
  return np.asarray(candidates)[np.argsort(score, kind='stable')[:num_select]]


def random_selection(candidates, num_select: int, seed: int) -> np.ndarray:
  """`num_select` distinct random candidates."""
  if num_select > len(candidates):
    raise ValueError(
      f'cannot select {num_select} poisoned nodes from {len(candidates)} '
      'unlabeled candidates'
    )
  rng = np.random.RandomState(seed)
  return rng.choice(np.asarray(candidates), num_select, replace=False)
