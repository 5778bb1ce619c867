"""PPO-clip policy loss, clipped value loss and loss aggregation modes.

Per-token losses are `[B, T]` arrays reduced by `aggregate_loss` with a
`loss_agg_mode` (verl's `agg_loss`; TRL's `loss_type`). With `m` the mask,
`L` the per-token loss, `n_b = sum_t m_bt` and `B'` the number of rows with
`n_b > 0`:

* `'token-mean'`: `sum_bt m L / sum_bt m` (DAPO, TRL `dapo`/`bnpo`): every
  token in the batch weighs the same.
* `'seq-mean-token-mean'`: `(1 / B') sum_b (sum_t m L / n_b)` (original
  GRPO, TRL `grpo`): every sequence weighs the same.
* `'seq-mean-token-sum'`: `(1 / B') sum_b sum_t m L`: sequence sums.
* `'dr_grpo'`: `sum_bt m L / (B * max_len)` (Dr.GRPO, verl
  `seq-mean-token-sum-norm`): a constant normaliser, no length bias;
  `max_len` defaults to T.

Rows without valid tokens are left out of the `B'` means (never NaN); an
all-masked batch gives 0.
"""

import jax
import jax.numpy as jnp

from common.rl import _checks
from common.rl import advantages as advantages_lib

LOSS_AGG_MODES = (
  'token-mean',
  'seq-mean-token-mean',
  'seq-mean-token-sum',
  'dr_grpo',
)
IMPORTANCE_SAMPLING_LEVELS = ('token', 'sequence')


def aggregate_loss(
  per_token_loss: jax.Array,
  mask: jax.Array,
  loss_agg_mode: str = 'token-mean',
  max_len: int | None = None,
) -> jax.Array:
  """Reduces a `[B, T]` per-token loss to a scalar (modes: module docstring).

  Args:
    per_token_loss: `[B, T]`.
    mask: `[B, T]`, nonzero where the token counts. Masked entries may hold
      any value, including NaN.
    loss_agg_mode: one of `LOSS_AGG_MODES`.
    max_len: the `'dr_grpo'` normaliser (e.g. `max_completion_length`);
      defaults to T. Ignored by the other modes.

  Returns:
    Scalar float32 loss.
  """
  _checks.check_choice('loss_agg_mode', loss_agg_mode, LOSS_AGG_MODES)
  _checks.check_rank('per_token_loss', per_token_loss, 2, '[B, T]')
  _checks.check_same_shape(['per_token_loss', 'mask'], [per_token_loss, mask])
  valid = mask != 0
  masked = jnp.where(valid, per_token_loss.astype(jnp.float32), 0.0)
  if loss_agg_mode == 'token-mean':
    return jnp.sum(masked) / jnp.maximum(jnp.sum(valid), 1)
  if loss_agg_mode == 'dr_grpo':
    if max_len is None:
      max_len = per_token_loss.shape[1]
    if max_len <= 0:
      raise ValueError(f'max_len must be > 0; got {max_len}.')
    return jnp.sum(masked) / (per_token_loss.shape[0] * max_len)
  counts = jnp.sum(valid, axis=-1)
  row_sums = jnp.sum(masked, axis=-1)
  if loss_agg_mode == 'seq-mean-token-mean':
    rows = row_sums / jnp.maximum(counts, 1)
  else:
    rows = row_sums
  has_tokens = counts > 0
  return jnp.sum(jnp.where(has_tokens, rows, 0.0)) / jnp.maximum(
    jnp.sum(has_tokens), 1
  )


def _check_ppo_args(epsilon, epsilon_high, delta):
  if not 0.0 < epsilon < 1.0:
    raise ValueError(f'epsilon must lie in (0, 1); got {epsilon}.')
  if epsilon_high is not None and not epsilon_high > 0.0:
    raise ValueError(f'epsilon_high must be > 0; got {epsilon_high}.')
  high = epsilon if epsilon_high is None else epsilon_high
  if delta is not None and not delta > 1.0 + high:
    raise ValueError(
      f'delta (dual-clip bound) must be > 1 + epsilon_high = {1.0 + high}; '
      f'got {delta}.'
    )


def ppo_policy_loss(
  logprobs: jax.Array,
  old_logprobs: jax.Array,
  advantages: jax.Array,
  mask: jax.Array,
  epsilon: float = 0.2,
  epsilon_high: float | None = None,
  delta: float | None = None,
  loss_agg_mode: str = 'token-mean',
  max_len: int | None = None,
  importance_sampling_level: str = 'token',
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """PPO clipped surrogate with asymmetric (DAPO) and dual clipping.

  With `rho = exp(logp - old_logp)` per token (or, for
  `importance_sampling_level='sequence'`, GSPO's length-normalised sequence
  ratio `rho_b = exp(mean_t (logp - old_logp))` over the row's valid tokens,
  shared by all its tokens, as TRL) and advantage `A` per token:

    L = max(-A * rho, -A * clip(rho, 1 - epsilon, 1 + epsilon_high))

  and with `delta` set, for `A < 0` additionally `L = min(L, -A * delta)`
  (dual clip: Ye et al. 2020, verl's `clip_ratio_c`; TRL's `delta` which
  caps `rho` at `delta`, identical because `delta > 1 + epsilon_high`).

  Args:
    logprobs: `[B, T]` log-probs under the current policy (differentiated).
    old_logprobs: `[B, T]` log-probs under the sampling policy.
    advantages: `[B, T]` per-token advantages.
    mask: `[B, T]` tokens that enter the loss.
    epsilon: lower clip range (and upper one when `epsilon_high` is None).
    epsilon_high: upper clip range (DAPO "clip-higher", e.g. 0.28).
    delta: dual-clip bound on the ratio for negative advantages (> 1 +
      epsilon_high), or None.
    loss_agg_mode: see `aggregate_loss`.
    max_len: see `aggregate_loss`.
    importance_sampling_level: one of `IMPORTANCE_SAMPLING_LEVELS`.

  Returns:
    `(loss, metrics)`: the aggregated scalar loss and token-mean metrics
    `clip_fraction` (tokens where the clipped term is active),
    `dual_clip_fraction`, `approx_kl` (mean `old_logp - logp`, verl's
    `ppo_kl`), `ratio_mean`, `ratio_max`.
  """
  _check_ppo_args(epsilon, epsilon_high, delta)
  _checks.check_choice(
    'importance_sampling_level',
    importance_sampling_level,
    IMPORTANCE_SAMPLING_LEVELS,
  )
  _checks.check_rank('logprobs', logprobs, 2, '[B, T]')
  _checks.check_same_shape(
    ['logprobs', 'old_logprobs', 'advantages', 'mask'],
    [logprobs, old_logprobs, advantages, mask],
  )
  _checks.check_finite('old_logprobs', old_logprobs, mask)
  _checks.check_finite('advantages', advantages, mask)
  high = epsilon if epsilon_high is None else epsilon_high
  valid = mask != 0
  log_ratio = jnp.where(
    valid, logprobs.astype(jnp.float32) - old_logprobs.astype(jnp.float32), 0.0
  )
  if importance_sampling_level == 'sequence':
    seq_log_ratio = advantages_lib.masked_mean(log_ratio, mask, axis=-1)
    log_ratio = jnp.where(valid, seq_log_ratio[:, None], 0.0)
  ratio = jnp.exp(log_ratio)
  adv = jnp.where(valid, advantages.astype(jnp.float32), 0.0)
  unclipped = -adv * ratio
  clipped = -adv * jnp.clip(ratio, 1.0 - epsilon, 1.0 + high)
  loss = jnp.maximum(unclipped, clipped)
  clip_active = clipped > unclipped
  dual_active = jnp.zeros_like(valid)
  if delta is not None:
    dual_bound = -adv * delta
    dual_active = (adv < 0) & (loss > dual_bound)
    loss = jnp.where(adv < 0, jnp.minimum(loss, dual_bound), loss)
  total = aggregate_loss(loss, mask, loss_agg_mode, max_len)
  metrics = {
    'clip_fraction': advantages_lib.masked_mean(clip_active, mask),
    'dual_clip_fraction': advantages_lib.masked_mean(dual_active, mask),
    'approx_kl': advantages_lib.masked_mean(-log_ratio, mask),
    'ratio_mean': advantages_lib.masked_mean(ratio, mask),
    'ratio_max': jnp.max(jnp.where(valid, ratio, 0.0)),
  }
  metrics = jax.tree.map(jax.lax.stop_gradient, metrics)
  return total, metrics


def clipped_value_loss(
  values: jax.Array,
  old_values: jax.Array,
  returns: jax.Array,
  mask: jax.Array,
  clip_range: float | None = 0.5,
  loss_agg_mode: str = 'token-mean',
  max_len: int | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """PPO clipped value loss (verl's `compute_value_loss`).

    v_clip = old_v + clip(v - old_v, -clip_range, clip_range)
    L = 0.5 * max((v - R)^2, (v_clip - R)^2)

  Args:
    values: `[B, T]` current critic predictions (differentiated).
    old_values: `[B, T]` critic predictions at sampling time.
    returns: `[B, T]` targets (e.g. from `gae_advantages`).
    mask: `[B, T]` valid tokens.
    clip_range: clip range (verl's `cliprange_value`, PiCA 0.5); None
      gives the plain squared error `0.5 * (v - R)^2`.
    loss_agg_mode: see `aggregate_loss`.
    max_len: see `aggregate_loss`.

  Returns:
    `(loss, metrics)` with `value_clip_fraction` (tokens where the clipped
    error is the larger one) and `value_mean`.
  """
  _checks.check_rank('values', values, 2, '[B, T]')
  _checks.check_same_shape(
    ['values', 'old_values', 'returns', 'mask'],
    [values, old_values, returns, mask],
  )
  if clip_range is not None and not clip_range > 0:
    raise ValueError(f'clip_range must be > 0 or None; got {clip_range}.')
  _checks.check_finite('returns', returns, mask)
  valid = mask != 0
  v = jnp.where(valid, values.astype(jnp.float32), 0.0)
  old_v = jnp.where(valid, old_values.astype(jnp.float32), 0.0)
  ret = jnp.where(valid, returns.astype(jnp.float32), 0.0)
  err = jnp.square(v - ret)
  if clip_range is None:
    loss = 0.5 * err
    clip_active = jnp.zeros_like(valid)
  else:
    v_clip = old_v + jnp.clip(v - old_v, -clip_range, clip_range)
    err_clip = jnp.square(v_clip - ret)
    loss = 0.5 * jnp.maximum(err, err_clip)
    clip_active = err_clip > err
  total = aggregate_loss(loss, mask, loss_agg_mode, max_len)
  metrics = {
    'value_clip_fraction': advantages_lib.masked_mean(clip_active, mask),
    'value_mean': advantages_lib.masked_mean(v, mask),
  }
  metrics = jax.tree.map(jax.lax.stop_gradient, metrics)
  return total, metrics
