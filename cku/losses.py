"""Unlearning objectives over per-token log-probabilities.

All functions take token log-probs `[B, T]` of the target tokens (response
tokens of a prompt/response pair) and a `[B, T]` mask of the tokens that
count; they are jit- and vmap-able. The shapes are checked at the boundary
with chex asserts (static, so free under jit): a `[T]` array or a mask of
another shape raises `common.rl.ShapeError` (chex's `AssertionError`, also a
`ValueError`) naming the function.

* Gradient ascent (GA): minimise  -NLL(forget) = mean log p(y_f | x_f).
* NPO (Zhang et al. 2024): minimise
  (2/β) · mean_b log(1 + (π_θ(y|x) / π_ref(y|x))^β)
  = -(2/β) · mean_b log σ(-β (log π_θ(y|x) - log π_ref(y|x))),
  a bounded version of GA whose gradient vanishes once the forget answers
  are unlikely.
* Retain term: NLL on retain data, or KL(π_θ ‖ π_ref) on retain tokens.

`unlearning_loss` combines them: L = L_forget + λ · L_retain.

Masked reductions are `common.rl.masked_mean` and
`common.rl.sequence_logprob`, which select the valid tokens with
`jnp.where`: padded positions may hold -inf or NaN (e.g. log-probs of
padding) without leaking into the loss or its gradient.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from common import rl

FORGET_LOSSES = ('gradient_ascent', 'npo')


def _check(logp, mask, name):
  """Shape contract (chex, static): both `[B, T]`; raises `rl.ShapeError`."""
  msg = (
    f'{name}: log-probs {logp.shape} and mask {mask.shape} must both be [B, T].'
  )
  chex.assert_rank(
    [logp, mask], 2, custom_message=msg, exception_type=rl.ShapeError
  )
  chex.assert_equal_shape(
    [logp, mask], custom_message=msg, exception_type=rl.ShapeError
  )


def nll(token_logp: jax.Array, mask: jax.Array) -> jax.Array:
  """Token-mean negative log-likelihood. `[B, T]`, `[B, T]` -> `[]`."""
  _check(token_logp, mask, 'nll')
  return -rl.masked_mean(token_logp.astype(jnp.float32), mask)


def gradient_ascent_loss(token_logp: jax.Array, mask: jax.Array) -> jax.Array:
  """-NLL on forget tokens (minimising it raises their NLL). -> `[]`."""
  return -nll(token_logp, mask)


def npo_loss(
  token_logp: jax.Array,
  ref_token_logp: jax.Array,
  mask: jax.Array,
  beta: float = 0.1,
) -> jax.Array:
  """Negative preference optimisation on forget sequences. -> `[]`.

  Args:
    token_logp: `[B, T]` policy log-probs of the forget responses.
    ref_token_logp: `[B, T]` reference-model log-probs (no gradient).
    mask: `[B, T]` response-token mask.
    beta: inverse temperature β > 0.
  """
  if isinstance(beta, int | float) and not beta > 0:
    raise ValueError(f'npo beta must be > 0, got {beta!r}.')
  _check(token_logp, mask, 'npo_loss')
  _check(ref_token_logp, mask, 'npo_loss reference')
  ratio = rl.sequence_logprob(token_logp, mask) - jax.lax.stop_gradient(
    rl.sequence_logprob(ref_token_logp, mask)
  )
  return -(2.0 / beta) * jnp.mean(jax.nn.log_sigmoid(-beta * ratio))


def kl_from_logits(
  logits: jax.Array, ref_logits: jax.Array, mask: jax.Array
) -> jax.Array:
  """Token-mean KL(π_θ ‖ π_ref) over the vocabulary. `[B, T, V]` x2 -> `[]`."""
  msg = (
    f'kl_from_logits: logits {logits.shape}, ref {ref_logits.shape} and '
    f'mask {mask.shape} disagree (want [B, T, V], [B, T, V], [B, T]).'
  )
  chex.assert_rank(
    [logits, ref_logits, mask],
    [3, 3, 2],
    custom_message=msg,
    exception_type=rl.ShapeError,
  )
  chex.assert_equal_shape(
    [logits, ref_logits], custom_message=msg, exception_type=rl.ShapeError
  )
  chex.assert_equal_shape_prefix(
    [logits, mask], 2, custom_message=msg, exception_type=rl.ShapeError
  )
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  ref = jax.nn.log_softmax(
    jax.lax.stop_gradient(ref_logits).astype(jnp.float32), axis=-1
  )
  kl = jnp.sum(jnp.exp(logp) * (logp - ref), axis=-1)
  return rl.masked_mean(kl, mask)


def unlearning_loss(
  forget_logp: jax.Array,
  forget_mask: jax.Array,
  retain_logp: jax.Array,
  retain_mask: jax.Array,
  method: str = 'gradient_ascent',
  retain_weight: float = 1.0,
  ref_forget_logp: jax.Array | None = None,
  beta: float = 0.1,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """L = L_forget + retain_weight · NLL(retain).

  Args:
    forget_logp: `[B, T]` policy log-probs on forget responses.
    forget_mask: `[B, T]`.
    retain_logp: `[B', T']` policy log-probs on retain responses.
    retain_mask: `[B', T']`.
    method: one of `FORGET_LOSSES`.
    retain_weight: λ >= 0.
    ref_forget_logp: `[B, T]` reference log-probs (required for NPO).
    beta: NPO's β.

  Returns:
    (loss `[]`, metrics with forget_nll, retain_nll, forget_loss).
  """
  if method not in FORGET_LOSSES:
    raise ValueError(
      f'unknown unlearning method {method!r}; allowed: {FORGET_LOSSES}.'
    )
  if isinstance(retain_weight, int | float) and retain_weight < 0:
    raise ValueError(f'retain_weight must be >= 0, got {retain_weight!r}.')
  if method == 'npo':
    if ref_forget_logp is None:
      raise ValueError('method npo needs ref_forget_logp.')
    forget = npo_loss(forget_logp, ref_forget_logp, forget_mask, beta)
  else:
    forget = gradient_ascent_loss(forget_logp, forget_mask)
  retain = nll(retain_logp, retain_mask)
  metrics = {
    'forget_loss': forget,
    'forget_nll': nll(forget_logp, forget_mask),
    'retain_nll': retain,
  }
  return forget + retain_weight * retain, metrics
