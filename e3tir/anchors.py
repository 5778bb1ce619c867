"""Entropy anchors along an expert trajectory (E3-TIR's branch points).

The expert trajectory is teacher-forced through the current policy; the
per-token entropy `H_t = -sum_v pi(v | x_<t) log pi(v | x_<t)` measures
where the policy is unsure. Anchors are `k` positions among the policy's own
tokens of the trajectory (tool observations are not candidates) [paper];
how they are chosen is a reconstruction [recon], both selectable:

* `'topk'`: the `k` highest-entropy candidates (ties: earlier position);
* `'sampled'`: `k` distinct candidates drawn without replacement with
  probability proportional to `exp(H_t / tau)` (Gumbel top-k).

A branch from anchor `a` keeps the expert tokens before `a` as its prefix and
samples token `a` onward from the policy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

ANCHOR_MODES = ('topk', 'sampled')


def _scores(entropy: jax.Array, candidates: jax.Array) -> jax.Array:
  return jnp.where(candidates, entropy.astype(jnp.float32), -jnp.inf)


def topk_anchors(
  entropy: jax.Array, candidates: jax.Array, k: int
) -> jax.Array:
  """The `k` highest-entropy candidate positions per row.

  Args:
    entropy: `[B, T]` per-token entropy of the forced trajectory.
    candidates: `[B, T]` bool, positions that may be anchors.
    k: anchors per row (static; every row needs >= k candidates).

  Returns:
    `[B, k]` int32 positions, highest entropy first (ties: earlier first).
  """
  _, idx = jax.lax.top_k(_scores(entropy, candidates), k)
  return idx.astype(jnp.int32)


def sampled_anchors(
  rng: jax.Array,
  entropy: jax.Array,
  candidates: jax.Array,
  k: int,
  temperature: float = 1.0,
) -> jax.Array:
  """`k` distinct positions per row drawn with weights `exp(H / tau)`.

  Gumbel top-k: `argtop_k(H / tau + Gumbel)` is a sample without
  replacement from the softmax over candidates.

  Args:
    rng: PRNG key.
    entropy: `[B, T]`.
    candidates: `[B, T]` bool.
    k: anchors per row.
    temperature: tau > 0; small tau approaches `topk_anchors`.

  Returns:
    `[B, k]` int32 positions, in draw order.
  """
  g = jax.random.gumbel(rng, entropy.shape, jnp.float32)
  s = jnp.where(candidates, entropy / temperature + g, -jnp.inf)
  _, idx = jax.lax.top_k(s, k)
  return idx.astype(jnp.int32)


def select_anchors(
  rng: jax.Array,
  entropy: jax.Array,
  candidates: jax.Array,
  k: int,
  mode: str = 'topk',
  temperature: float = 1.0,
) -> jax.Array:
  """`topk_anchors` or `sampled_anchors` by `mode` (one of ANCHOR_MODES)."""
  if mode == 'topk':
    return topk_anchors(entropy, candidates, k)
  if mode == 'sampled':
    return sampled_anchors(rng, entropy, candidates, k, temperature)
  raise ValueError(f'anchor mode {mode!r}; allowed: {ANCHOR_MODES}')
