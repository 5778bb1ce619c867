"""Dynamic experience filtering and the best-expert gate.

Both are named in the paper without formulas; the rules here are
[recon] and configurable:

* reward-variance filter: a prompt group whose rewards all agree
  (std <= `min_std`) carries no group-relative signal and is dropped
  (DAPO's dynamic sampling);
* relative-performance filter: an anchor subtree is kept only when its mean
  reward is at least the prompt's self-exploration mean plus `margin`
  (expert-guided experience must beat what the policy finds alone);
* best-expert gate: expert guidance (the expert sample and its branches)
  is used for a prompt only when the best self-exploration reward is below
  `threshold` (only beyond the model's knowledge boundary).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def variance_keep(rewards: jax.Array, min_std: float = 0.0) -> jax.Array:
  """`[G]` bool: groups `[G, n]` whose reward std (ddof 0) exceeds `min_std`."""
  return jnp.std(rewards.astype(jnp.float32), axis=-1) > min_std


def relative_keep(
  subtree_rewards: jax.Array,
  subtree_mask: jax.Array,
  self_rewards: jax.Array,
  margin: float = 0.0,
) -> jax.Array:
  """`[G, K]` bool: subtrees whose mean reward >= self mean + `margin`.

  Args:
    subtree_rewards: `[G, K, B]` rewards of the B branches of K anchors.
    subtree_mask: `[G, K, B]` bool, real branches.
    self_rewards: `[G, n]` self-exploration rewards.
    margin: required advantage of the subtree over self-exploration.
  """
  m = subtree_mask.astype(jnp.float32)
  mean = jnp.sum(subtree_rewards * m, -1) / jnp.maximum(jnp.sum(m, -1), 1.0)
  base = jnp.mean(self_rewards.astype(jnp.float32), axis=-1, keepdims=True)
  return (mean >= base + margin) & (jnp.sum(m, -1) > 0)


def best_expert_gate(
  self_rewards: jax.Array, threshold: float = 1.0
) -> jax.Array:
  """`[G]` bool: use expert guidance where `max(self_rewards) < threshold`."""
  return jnp.max(self_rewards.astype(jnp.float32), axis=-1) < threshold
