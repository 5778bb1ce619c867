"""E3-TIR's hybrid advantage: global group plus within-subtree normalisation.

A prompt's group mixes self-exploration rollouts, the expert trajectory and
the branches grown from anchors on it. With `r_i` the reward of sample `i`:

  A_global_i = (r_i - mean_{g(i)} r) / (std_{g(i)} r + eps)   over the prompt
  A_tree_i   = (r_i - mean_{s(i)} r) / (std_{s(i)} r + eps)   over siblings

where `g(i)` is every sample of `i`'s prompt [paper] and `s(i)` the branches
that share `i`'s anchor prefix [paper]. Samples outside any subtree (self
rollouts, the expert) have `A_tree = 0`. How the two combine is not public
[recon], both selectable:

* `'sum'`:  `A = A_global + A_tree` (TreeRL-style);
* `'mix'`:  `A = mu * A_global + (1 - mu) * A_tree` on branch samples and
  `A = A_global` elsewhere;
* `'global'`: `A = A_global` (the "no hybrid advantage" ablation).

`std` is the unbiased sample std (verl's GRPO, eps 1e-6); a segment of one
sample has mean = its reward and std 1, so its advantage is 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

COMBINES = ('sum', 'mix', 'global')


def segment_normalize(
  rewards: jax.Array,
  segment_ids: jax.Array,
  num_segments: int,
  eps: float = 1e-6,
) -> jax.Array:
  """`(r - mean_seg) / (std_seg + eps)` within segments (unbiased std).

  Args:
    rewards: `[N]` float rewards.
    segment_ids: `[N]` int in `[0, num_segments)`; a negative id marks a
      sample in no segment (its output is 0).
    num_segments: static segment count.
    eps: added to the std.

  Returns:
    `[N]` float32 normalised rewards.
  """
  r = rewards.astype(jnp.float32)
  inside = segment_ids >= 0
  ids = jnp.where(inside, segment_ids, num_segments)  # dump slot
  ones = inside.astype(jnp.float32)
  n = jax.ops.segment_sum(ones, ids, num_segments + 1)
  s = jax.ops.segment_sum(r * ones, ids, num_segments + 1)
  mean = s / jnp.maximum(n, 1.0)
  dev = (r - mean[ids]) * ones
  ss = jax.ops.segment_sum(dev * dev, ids, num_segments + 1)
  std = jnp.where(n > 1, jnp.sqrt(ss / jnp.maximum(n - 1.0, 1.0)), 1.0)
  return jnp.where(inside, dev / (std[ids] + eps), 0.0)


def hybrid_advantages(
  rewards: jax.Array,
  group_ids: jax.Array,
  subtree_ids: jax.Array,
  num_groups: int,
  num_subtrees: int,
  combine: str = 'sum',
  mu: float = 0.5,
  eps: float = 1e-6,
) -> jax.Array:
  """The hybrid advantage of every sample (module docstring).

  Args:
    rewards: `[N]` rewards.
    group_ids: `[N]` prompt group of each sample in `[0, num_groups)`.
    subtree_ids: `[N]` anchor subtree of each branch sample in
      `[0, num_subtrees)`, -1 for samples in no subtree.
    num_groups: static.
    num_subtrees: static (>= 1; use 1 with all ids -1 when there is none).
    combine: one of `COMBINES`.
    mu: the convex weight of `'mix'`, in [0, 1].
    eps: std offset.

  Returns:
    `[N]` float32 advantages.
  """
  if combine not in COMBINES:
    raise ValueError(f'combine={combine!r}; allowed: {COMBINES}')
  a_g = segment_normalize(rewards, group_ids, num_groups, eps)
  if combine == 'global':
    return a_g
  a_t = segment_normalize(rewards, subtree_ids, max(num_subtrees, 1), eps)
  if combine == 'sum':
    return a_g + a_t
  in_tree = subtree_ids >= 0
  return jnp.where(in_tree, mu * a_g + (1.0 - mu) * a_t, a_g)
