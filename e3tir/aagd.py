"""Advantage-Aware Gradient Detaching (AAGD) and the tool-output mask.

The same expert prefix appears in a prompt's winning and losing branches;
without care it is pushed up by the first and down by the second. AAGD
stops the gradient through the shared expert-prefix tokens of every sample
whose advantage is negative and keeps the on-policy suffix [paper]; the
token gate is [recon]:

  g_t = 0   if t is an expert-prefix token and A < 0
  g_t = 1   otherwise

Tool-output tokens (observations: `<result>`, `<information>` blocks) are
never trained on (Tool-Star's `result_mask`), separately from AAGD: the
input `loss_mask` already excludes them, and `aagd_mask` only removes more.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def aagd_mask(
  loss_mask: jax.Array,
  prefix_mask: jax.Array,
  advantages: jax.Array,
  enabled: bool = True,
) -> jax.Array:
  """The loss mask after AAGD.

  Args:
    loss_mask: `[B, T]` bool, policy tokens (observations already out).
    prefix_mask: `[B, T]` bool, tokens copied from the expert trajectory.
    advantages: `[B]` or `[B, T]` advantages.
    enabled: False returns `loss_mask` (the "no AAGD" ablation).

  Returns:
    `[B, T]` bool: `loss_mask & ~(prefix_mask & A < 0)`.
  """
  loss_mask = loss_mask.astype(bool)
  if not enabled:
    return loss_mask
  adv = advantages if advantages.ndim == 2 else advantages[:, None]
  return loss_mask & ~(prefix_mask.astype(bool) & (adv < 0))


def observation_mask(
  tokens: jax.Array, open_ids: jax.Array, close_ids: jax.Array
) -> jax.Array:
  """`[B, T]` bool: tokens inside (and on) observation blocks.

  Args:
    tokens: `[B, T]` int ids.
    open_ids: `[K]` opening-tag ids (`<result>`, `<information>`, ...).
    close_ids: `[K]` the matching closing-tag ids.

  Returns:
    True from each opening tag through its closing tag (an unclosed block
    runs to the end).
  """
  is_open = jnp.any(tokens[..., None] == open_ids, axis=-1)
  is_close = jnp.any(tokens[..., None] == close_ids, axis=-1)
  depth = jnp.cumsum(is_open.astype(jnp.int32) - is_close, axis=-1)
  return (depth > 0) | is_close
