"""Per-token log-probabilities and entropies from logits.

All functions compute in float32 whatever the logits' dtype (bf16 logits are
upcast before the log-softmax), which is what PPO ratios `exp(new - old)`
need to be accurate.

Alignment convention used across `common.rl`: a per-token array `[B, T]` is
aligned with `tokens [B, T]`; entry `t` is about token `t` as predicted from
tokens `< t`. A causal LM's logits at position `t` predict token `t + 1`, so
`next_token_logprobs` shifts by one and writes 0 at position 0 (which has no
prediction and must be masked out of every loss).
"""

import jax
import jax.numpy as jnp

from common.rl import _checks


def token_logprobs(
  logits: jax.Array, targets: jax.Array, temperature: float = 1.0
) -> jax.Array:
  """Log-probability of each target under the logits.

  `log softmax(logits / temperature)[targets]`, computed as
  `logits[target] - logsumexp(logits)` in float32 (numerically stable for
  large logits).

  Args:
    logits: `[..., V]` unnormalised scores (e.g. `[B, T, V]`).
    targets: `[...]` integer token ids in `[0, V)` (e.g. `[B, T]`).
    temperature: sampling temperature the logits are divided by (must match
      the sampler's temperature for on-policy log-probs).

  Returns:
    `[...]` float32 log-probabilities.
  """
  _checks.check_rank(
    'logits', logits, jnp.ndim(targets) + 1, 'targets.shape + (V,)'
  )
  _checks.check_same_prefix(
    ['logits', 'targets'],
    [logits, targets],
    jnp.ndim(targets),
    'logits must have shape targets.shape + (V,)',
  )
  if not jnp.issubdtype(jnp.asarray(targets).dtype, jnp.integer):
    raise ValueError(f'targets must be integers; got {targets.dtype}.')
  if temperature <= 0:
    raise ValueError(f'temperature must be > 0; got {temperature}.')
  logits = logits.astype(jnp.float32) / temperature
  picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  return picked - jax.nn.logsumexp(logits, axis=-1)


def entropy(logits: jax.Array, temperature: float = 1.0) -> jax.Array:
  """Entropy of the categorical distribution at every position.

  `H = logsumexp(z) - sum_v softmax(z)_v z_v` with `z = logits / temperature`
  in float32, which stays finite for `-inf` logits (masked vocabulary).

  Args:
    logits: `[..., V]` unnormalised scores.
    temperature: divides the logits, as in `token_logprobs`.

  Returns:
    `[...]` float32 entropies in nats.
  """
  if temperature <= 0:
    raise ValueError(f'temperature must be > 0; got {temperature}.')
  z = logits.astype(jnp.float32) / temperature
  probs = jax.nn.softmax(z, axis=-1)
  # Double-where keeps values and gradients finite where z = -inf.
  z_safe = jnp.where(probs > 0, z, 0.0)
  weighted = jnp.sum(probs * z_safe, axis=-1)
  return jax.nn.logsumexp(z, axis=-1) - weighted


def shift_for_next_token(
  logits: jax.Array, tokens: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Aligns causal-LM logits with the tokens they predict.

  Args:
    logits: `[B, T, V]`; `logits[:, t]` predicts `tokens[:, t + 1]`.
    tokens: `[B, T]` integer ids.

  Returns:
    `(logits[:, :-1], tokens[:, 1:])`, shapes `[B, T-1, V]` and `[B, T-1]`.
  """
  _checks.check_rank('logits', logits, 3, '[B, T, V]')
  _checks.check_rank('tokens', tokens, 2, '[B, T]')
  _checks.check_same_prefix(
    ['logits', 'tokens'],
    [logits, tokens],
    2,
    'logits [B, T, V] and tokens [B, T] disagree',
  )
  return logits[:, :-1], tokens[:, 1:]


def _pad_front(x: jax.Array) -> jax.Array:
  return jnp.pad(x, ((0, 0), (1, 0)))


def next_token_logprobs(
  logits: jax.Array, tokens: jax.Array, temperature: float = 1.0
) -> jax.Array:
  """Log-prob of each token given its prefix, aligned with `tokens`.

  Args:
    logits: `[B, T, V]` causal-LM logits for `tokens`.
    tokens: `[B, T]` integer ids.
    temperature: see `token_logprobs`.

  Returns:
    `[B, T]` float32; entry `t >= 1` is `log p(tokens[t] | tokens[:t])`,
    entry 0 is 0 (no prediction; mask it out).
  """
  shifted_logits, targets = shift_for_next_token(logits, tokens)
  return _pad_front(token_logprobs(shifted_logits, targets, temperature))


def next_token_entropy(
  logits: jax.Array, temperature: float = 1.0
) -> jax.Array:
  """Entropy of the distribution each token was drawn from, `[B, T]`.

  Entry `t >= 1` is the entropy of `logits[:, t - 1]`; entry 0 is 0.
  """
  _checks.check_rank('logits', logits, 3, '[B, T, V]')
  return _pad_front(entropy(logits[:, :-1], temperature))


def sequence_logprob(
  logprobs: jax.Array, mask: jax.Array, average: bool = False
) -> jax.Array:
  """Sum (or mean) of per-token log-probs over the valid tokens.

  Padded positions never contribute, even if they hold `-inf` or NaN.

  Args:
    logprobs: `[B, T]` per-token log-probs.
    mask: `[B, T]`, nonzero for tokens that belong to the sequence.
    average: divide by the number of valid tokens (length-normalised
      log-prob; 0 for a row without valid tokens).

  Returns:
    `[B]` float32 sequence log-probs.
  """
  _checks.check_rank('logprobs', logprobs, 2, '[B, T]')
  _checks.check_same_shape(['logprobs', 'mask'], [logprobs, mask])
  valid = mask != 0
  total = jnp.sum(jnp.where(valid, logprobs.astype(jnp.float32), 0.0), axis=-1)
  if average:
    return total / jnp.maximum(jnp.sum(valid, axis=-1), 1)
  return total
