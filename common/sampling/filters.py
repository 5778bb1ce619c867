"""Logit processing for sampling: temperature, top-k and top-p (nucleus).

All functions are pure and jit-able over `[B, V]` logits; filtered-out
entries become `-inf`, so `jax.random.categorical` never picks them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def top_k_filter(logits: jax.Array, k: int) -> jax.Array:
  """Keeps the `k` largest logits per row (ties at the k-th value kept).

  Args:
    logits: `[B, V]`.
    k: number of candidates, `1 <= k`; `k >= V` keeps everything.

  Returns:
    `[B, V]` logits with the rest set to `-inf`.
  """
  if k >= logits.shape[-1]:
    return logits
  kth = jax.lax.top_k(logits, k)[0][..., -1:]
  return jnp.where(logits < kth, -jnp.inf, logits)


def top_p_filter(logits: jax.Array, p: float) -> jax.Array:
  """Keeps the smallest set of top tokens whose probability reaches `p`.

  A token is kept when the total probability of the tokens strictly more
  likely than it is below `p` (so the most likely token is always kept, and
  the token that crosses `p` is included). Ties at the threshold are kept.

  Args:
    logits: `[B, V]` (already temperature-scaled).
    p: nucleus mass in `(0, 1]`; 1 keeps everything.

  Returns:
    `[B, V]` logits with the tokens outside the nucleus set to `-inf`.
  """
  if p >= 1.0:
    return logits
  sorted_logits = jnp.flip(jnp.sort(logits, axis=-1), axis=-1)
  probs = jax.nn.softmax(sorted_logits, axis=-1)
  mass_before = jnp.cumsum(probs, axis=-1) - probs
  keep = mass_before < p
  n_keep = jnp.sum(keep, axis=-1, keepdims=True)
  threshold = jnp.take_along_axis(sorted_logits, n_keep - 1, axis=-1)
  return jnp.where(logits < threshold, -jnp.inf, logits)


def repetition_penalty(
  logits: jax.Array, seen: jax.Array, penalty: float
) -> jax.Array:
  """CTRL / Hugging Face repetition penalty on tokens already in the context.

  For each token `v` with `seen[b, v]`: `logit / penalty` where the logit is
  positive, `logit * penalty` where it is not (both lower its probability
  for `penalty > 1`). Other tokens are unchanged.

  Args:
    logits: `[B, V]`.
    seen: `[B, V]` bool, True for tokens in the prompt or generated so far.
    penalty: `> 0`; 1 leaves the logits as they are.

  Returns:
    `[B, V]` float32 logits.
  """
  x = logits.astype(jnp.float32)
  hit = jnp.where(x > 0, x / penalty, x * penalty)
  return jnp.where(seen, hit, x)


def sampling_logits(
  logits: jax.Array,
  temperature: float,
  top_k: int | None = None,
  top_p: float = 1.0,
) -> jax.Array:
  """Temperature, then top-k, then top-p; `[B, V]` -> `[B, V]` float32."""
  x = logits.astype(jnp.float32) / temperature
  if top_k:
    x = top_k_filter(x, top_k)
  return top_p_filter(x, top_p)


def choose_tokens(
  logits: jax.Array,
  rng: jax.Array,
  temperature: float,
  top_k: int | None = None,
  top_p: float = 1.0,
) -> jax.Array:
  """Picks one token per row: argmax if `temperature == 0`, else samples.

  Args:
    logits: `[B, V]` raw model logits.
    rng: PRNG key.
    temperature: 0 for greedy decoding, else > 0.
    top_k: optional top-k restriction (None or 0: off).
    top_p: nucleus mass (1: off).

  Returns:
    `[B]` int32 token ids.
  """
  if temperature == 0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  x = sampling_logits(logits, temperature, top_k, top_p)
  return jax.random.categorical(rng, x, axis=-1).astype(jnp.int32)
