"""Advantage estimators: GRPO, Dr.GRPO, RLOO, GAE, turn-level GRPO, whitening.

Group convention (as TRL and Tunix): a batch of `B = num_prompts *
num_generations` rows where the `num_generations` completions of one prompt
are consecutive rows (`repeat_interleave` order).

Sequence-level estimators return `[B]`; `broadcast_to_tokens` spreads them
over a `[B, T]` token mask. GAE and the turn-level estimator are per token.
Every function is jit- and vmap-able; padded positions never affect results,
even when they hold NaN or inf.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from common.rl import _checks

SCALE_REWARDS = ('group', 'batch', 'none')
TURN_NORM_MODES = ('separate', 'joint', 'per_turn')


def _check_groups(rewards: jax.Array, num_generations: int) -> None:
  _checks.check_rank('rewards', rewards, 1, '[B]')
  if not isinstance(num_generations, int | np.integer) or num_generations < 2:
    raise ValueError(
      f'num_generations must be an int >= 2 (one group needs at least two '
      f'completions); got {num_generations!r}.'
    )
  if rewards.shape[0] % num_generations:
    raise ValueError(
      f'Batch size {rewards.shape[0]} is not a multiple of num_generations='
      f'{num_generations}; rows must be whole groups of consecutive '
      f'completions.'
    )


def group_advantages(
  rewards: jax.Array,
  num_generations: int,
  scale_rewards: str = 'group',
  eps: float = 1e-6,
  ddof: int = 1,
) -> jax.Array:
  """GRPO advantages: reward minus its group mean, optionally over a std.

  `A_i = (r_i - mean_{g(i)}(r)) / (std + eps)` where `std` is, by
  `scale_rewards` (TRL's names):

  * `'group'`: the std of the rewards in row i's group (GRPO);
  * `'batch'`: the std of all rewards in the batch (the mean stays the
    group mean; more robust to groups with near-equal rewards);
  * `'none'`: no division, `A_i = r_i - mean` (Dr.GRPO).

  Args:
    rewards: `[B]` scalar reward per completion, groups consecutive.
    num_generations: group size G (>= 2); `B % G == 0`.
    scale_rewards: one of `SCALE_REWARDS`.
    eps: added to the std (keeps all-equal groups at advantage 0); verl
      uses 1e-6 (the default), TRL 1e-4.
    ddof: delta degrees of freedom of the std; 1 (Bessel) matches TRL and
      verl (`torch.std`), 0 the population std.

  Returns:
    `[B]` float32 advantages.
  """
  _checks.check_choice('scale_rewards', scale_rewards, SCALE_REWARDS)
  _check_groups(rewards, num_generations)
  _checks.check_finite('rewards', rewards)
  r = rewards.astype(jnp.float32)
  grouped = r.reshape(-1, num_generations)
  centred = (grouped - grouped.mean(axis=-1, keepdims=True)).reshape(-1)
  if scale_rewards == 'none':
    return centred
  if scale_rewards == 'group':
    std = jnp.std(grouped, axis=-1, ddof=ddof)
    std = jnp.repeat(std, num_generations)
  else:
    std = jnp.std(r, ddof=ddof)
  return centred / (std + eps)


def dr_grpo_advantages(rewards: jax.Array, num_generations: int) -> jax.Array:
  """Dr.GRPO advantages `A_i = r_i - mean_{g(i)}(r)` (no std division).

  Pair with `loss_agg_mode='dr_grpo'` (Liu et al. 2025, "Understanding R1-Zero
  -like training"). Shapes as `group_advantages`.
  """
  return group_advantages(rewards, num_generations, scale_rewards='none')


def rloo_advantages(rewards: jax.Array, num_generations: int) -> jax.Array:
  """REINFORCE leave-one-out: `A_i = r_i - mean_{j != i in group}(r_j)`.

  Equals `G / (G - 1) * (r_i - mean_group)` (Ahmadian et al. 2024).

  Args:
    rewards: `[B]`, groups of `num_generations` consecutive rows.
    num_generations: G >= 2.

  Returns:
    `[B]` float32 advantages.
  """
  _check_groups(rewards, num_generations)
  _checks.check_finite('rewards', rewards)
  grouped = rewards.astype(jnp.float32).reshape(-1, num_generations)
  others = (grouped.sum(axis=-1, keepdims=True) - grouped) / (
    num_generations - 1
  )
  return (grouped - others).reshape(-1)


def broadcast_to_tokens(advantages: jax.Array, mask: jax.Array) -> jax.Array:
  """Per-sequence advantages `[B]` copied to every valid token, `[B, T]`.

  Padded positions (mask 0) get 0.
  """
  _checks.check_rank('advantages', advantages, 1, '[B]')
  _checks.check_rank('mask', mask, 2, '[B, T]')
  _checks.check_same_prefix(
    ['advantages', 'mask'],
    [advantages, mask],
    1,
    'advantages [B] and mask [B, T] disagree on B',
  )
  return jnp.where(mask != 0, advantages.astype(jnp.float32)[:, None], 0.0)


def masked_mean(x: jax.Array, mask: jax.Array, axis=None) -> jax.Array:
  """Mean of `x` over entries where `mask != 0` (0 if there are none)."""
  valid = mask != 0
  total = jnp.sum(jnp.where(valid, x, 0.0), axis=axis)
  return total / jnp.maximum(jnp.sum(valid, axis=axis), 1)


def masked_var(x: jax.Array, mask: jax.Array, unbiased: bool = True):
  """Variance over the valid entries of `x` (Bessel-corrected by default).

  With fewer than two valid entries the unbiased variance is 0.
  """
  valid = mask != 0
  count = jnp.sum(valid)
  mean = masked_mean(x, mask)
  sq = masked_mean(jnp.square(jnp.where(valid, x - mean, 0.0)), mask)
  if unbiased:
    return jnp.where(count > 1, sq * count / jnp.maximum(count - 1, 1), 0.0)
  return sq


def whiten(
  x: jax.Array,
  mask: jax.Array,
  shift_mean: bool = True,
  eps: float = 1e-8,
) -> jax.Array:
  """Whitens `x` with the mean and std of its valid entries (verl's
  `masked_whiten`).

  `(x - mean) / sqrt(var + eps)` with the Bessel-corrected variance over the
  whole batch of valid entries; with `shift_mean=False` the mean is added
  back (scale only). Padded positions are returned as 0.

  Args:
    x: `[B, T]` (any shape) values, e.g. GAE advantages.
    mask: same shape, nonzero where valid.
    shift_mean: subtract the mean (True) or only rescale (False).
    eps: variance floor.

  Returns:
    Whitened `x`, float32, 0 at padded positions.
  """
  _checks.check_same_shape(['x', 'mask'], [x, mask])
  x = x.astype(jnp.float32)
  valid = mask != 0
  mean = masked_mean(x, mask)
  var = masked_var(x, mask)
  out = (x - mean) * jax.lax.rsqrt(var + eps)
  if not shift_mean:
    out = out + mean
  return jnp.where(valid, out, 0.0)


def gae_advantages(
  rewards: jax.Array,
  values: jax.Array,
  mask: jax.Array,
  gamma: float = 1.0,
  lam: float = 1.0,
  bootstrap_value: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Generalised advantage estimation over valid tokens (Schulman et al.).

  Over the valid positions t_1 < t_2 < ... < t_n of a row:

    delta_i = r_{t_i} + gamma * V_{t_{i+1}} - V_{t_i}
    A_{t_i} = delta_i + gamma * lam * A_{t_{i+1}}

  with `V_{t_{n+1}} = bootstrap_value` (0 by default: the sequence ended at
  its last valid token, so bootstrapping stops there) and `A_{t_{n+1}} = 0`.
  Masked positions are skipped, as in verl's `compute_gae_advantage_return`:
  a masked tail is never bootstrapped from, and interior masked tokens (e.g.
  retrieved text) are jumped over (the next valid token's value is used, one
  factor of gamma). Rewards at masked positions are ignored; put them on a
  valid token.

  Args:
    rewards: `[B, T]` per-token rewards.
    values: `[B, T]` critic values V(s_t).
    mask: `[B, T]`, nonzero at valid (action) tokens.
    gamma: discount in [0, 1].
    lam: GAE lambda in [0, 1].
    bootstrap_value: optional `[B]` value of the state after the last valid
      token (for truncated rather than terminated sequences).

  Returns:
    `(advantages, returns)`, both `[B, T]` float32 and 0 at masked
    positions; `returns = advantages + values` (the critic's target).
  """
  _checks.check_rank('rewards', rewards, 2, '[B, T]')
  _checks.check_same_shape(
    ['rewards', 'values', 'mask'], [rewards, values, mask]
  )
  for name, val in (('gamma', gamma), ('lam', lam)):
    if _checks.is_concrete(val) and not 0.0 <= float(val) <= 1.0:
      raise ValueError(f'{name} must lie in [0, 1]; got {val}.')
  _checks.check_finite('rewards', rewards, mask)
  _checks.check_finite('values', values, mask)
  batch = rewards.shape[0]
  if bootstrap_value is None:
    bootstrap_value = jnp.zeros((batch,), jnp.float32)
  else:
    _checks.check_rank('bootstrap_value', bootstrap_value, 1, '[B]')
    _checks.check_same_prefix(
      ['bootstrap_value', 'rewards'],
      [bootstrap_value, rewards],
      1,
      f'bootstrap_value must have shape ({batch},)',
    )
  valid = mask != 0
  r = rewards.astype(jnp.float32)
  v = values.astype(jnp.float32)

  def step(carry, inputs):
    next_value, next_adv = carry
    r_t, v_t, m_t = inputs
    delta = r_t + gamma * next_value - v_t
    adv = delta + gamma * lam * next_adv
    carry = (jnp.where(m_t, v_t, next_value), jnp.where(m_t, adv, next_adv))
    return carry, jnp.where(m_t, adv, 0.0)

  init = (bootstrap_value.astype(jnp.float32), jnp.zeros((batch,), jnp.float32))
  _, adv_t = jax.lax.scan(step, init, (r.T, v.T, valid.T), reverse=True)
  advantages = adv_t.T
  returns = jnp.where(valid, advantages + v, 0.0)
  return advantages, returns


def group_normalize(
  values: jax.Array,
  mask: jax.Array,
  num_generations: int,
  eps: float = 1e-8,
  std_floor: float = 0.0,
  per_column: bool = False,
) -> jax.Array:
  """Z-normalises the valid entries of each group, pooled over its rows.

  For group g (rows `g*G .. g*G+G-1`), the mean and population std are
  taken over all valid entries of those rows: `(x - mean_g) /
  (max(std_g, std_floor) + eps)`; a group with at most one valid entry
  uses std 1 (as PiCA's `compute_grpo_outcome_advantage`).

  With `std_floor > 0`, a group whose entries differ only by float
  rounding (std ~ 1e-8) normalises to ~0 instead of to +-O(1) noise.
  With `per_column=True` each column k is its own pool (per group), e.g.
  step rewards normalised per turn index, so a reward level that depends
  only on the position does not become an advantage.

  Args:
    values: `[B, K]` e.g. K step rewards per trajectory.
    mask: `[B, K]`, nonzero where valid.
    num_generations: rows per group G.
    eps: added to the std.
    std_floor: lower bound on the std (0 disables it).
    per_column: pool each column separately instead of the whole group.

  Returns:
    `[B, K]` float32, 0 at masked entries.
  """
  _checks.check_rank('values', values, 2, '[B, K]')
  _checks.check_same_shape(['values', 'mask'], [values, mask])
  _check_groups(values[:, 0], num_generations)
  if not std_floor >= 0.0:
    raise ValueError(f'std_floor must be >= 0; got {std_floor!r}.')
  b, k = values.shape
  # [groups, G, K]; pool over rows and columns, or over rows per column
  x = values.astype(jnp.float32).reshape(b // num_generations, -1, k)
  valid = (mask != 0).reshape(x.shape)
  axes = (1,) if per_column else (1, 2)
  count = jnp.sum(valid, axis=axes, keepdims=True)
  mean = jnp.sum(jnp.where(valid, x, 0.0), axis=axes, keepdims=True) / (
    jnp.maximum(count, 1)
  )
  var = jnp.sum(
    jnp.where(valid, jnp.square(x - mean), 0.0), axis=axes, keepdims=True
  ) / jnp.maximum(count, 1)
  std = jnp.where(count > 1, jnp.maximum(jnp.sqrt(var), std_floor), 1.0)
  out = jnp.where(valid, (x - mean) / (std + eps), 0.0)
  return out.reshape(b, k)


def turn_level_advantages(
  outcome_rewards: jax.Array,
  step_rewards: jax.Array,
  step_mask: jax.Array,
  step_positions: jax.Array,
  response_mask: jax.Array,
  num_generations: int,
  gamma: float = 1.0,
  norm_mode: str = 'separate',
  eps: float = 1e-8,
  std_floor: float = 0.0,
  step_weight: float = 1.0,
) -> jax.Array:
  """Turn-level GRPO advantages with step and outcome rewards (PiCA's fork).

  1. Normalise per group (`group_normalize`): with `norm_mode='separate'`
     the outcome rewards and the step rewards are z-normalised separately;
     with `'joint'` they form one pool per group; with `'per_turn'` the
     outcome is normalised as in `'separate'` and the step rewards per
     turn index k (a deviation from the released code: a hazard level that
     depends only on the position then gives no advantage).
  2. Accumulate over a row's valid steps k = 0..K-1:
     `A_k = r^_k + gamma * A_{k+1}` (`A_K = 0`), then add `r^_out`
     (`step_weight * A_k + r^_out`: after normalisation the rewards' own
     scales cancel, so `step_weight` is what weighs steps against the
     outcome; 1 is the released code).
  3. Broadcast: step k's reward sits at token `step_positions[k]`; turn k
     covers tokens `step_positions[k-1] < t <= step_positions[k]` and gets
     `A_k + r^_out`; tokens after the last step get `r^_out` alone.
     The result is multiplied by `response_mask`.

  Args:
    outcome_rewards: `[B]` final reward per trajectory.
    step_rewards: `[B, K]` intermediate rewards, valid steps first.
    step_mask: `[B, K]`, nonzero for real steps (a prefix of each row).
    step_positions: `[B, K]` int token index of each step's reward,
      strictly increasing over the valid steps.
    response_mask: `[B, T]` tokens that receive an advantage.
    num_generations: group size G.
    gamma: turn discount.
    norm_mode: one of `TURN_NORM_MODES`.
    eps: added to the group std.
    std_floor: lower bound on every group std (`group_normalize`).
    step_weight: weight of the accumulated step advantage.

  Returns:
    `[B, T]` float32 token advantages.
  """
  _checks.check_choice('norm_mode', norm_mode, TURN_NORM_MODES)
  _checks.check_rank('outcome_rewards', outcome_rewards, 1, '[B]')
  _checks.check_rank('step_rewards', step_rewards, 2, '[B, K]')
  _checks.check_rank('response_mask', response_mask, 2, '[B, T]')
  _checks.check_same_shape(
    ['step_rewards', 'step_mask', 'step_positions'],
    [step_rewards, step_mask, step_positions],
  )
  _checks.check_same_prefix(
    ['outcome_rewards', 'step_rewards', 'response_mask'],
    [outcome_rewards, step_rewards, response_mask],
    1,
    'Batch sizes disagree',
  )
  _checks.check_finite('outcome_rewards', outcome_rewards)
  _checks.check_finite('step_rewards', step_rewards, step_mask)
  _check_step_layout(step_mask, step_positions)
  outcome = outcome_rewards.astype(jnp.float32)[:, None]
  step_valid = step_mask != 0
  norm = functools.partial(
    group_normalize,
    num_generations=num_generations,
    eps=eps,
    std_floor=std_floor,
  )
  if norm_mode == 'joint':
    pooled = jnp.concatenate([step_rewards.astype(jnp.float32), outcome], 1)
    pooled_mask = jnp.concatenate([step_valid, jnp.ones_like(outcome, bool)], 1)
    pooled_n = norm(pooled, pooled_mask)
    steps_n, out_n = pooled_n[:, :-1], pooled_n[:, -1:]
  else:
    out_n = norm(outcome, jnp.ones_like(outcome))
    steps_n = norm(step_rewards, step_mask, per_column=norm_mode == 'per_turn')
  steps_n = step_weight * steps_n

  def accumulate(next_acc, inputs):
    r_k, m_k = inputs
    acc = jnp.where(m_k, r_k + gamma * next_acc, 0.0)
    return acc, acc

  _, acc = jax.lax.scan(
    accumulate,
    jnp.zeros(steps_n.shape[0]),
    (steps_n.T, step_valid.T),
    reverse=True,
  )
  acc = jnp.concatenate([acc.T, jnp.zeros_like(out_n)], axis=1)  # [B, K+1]
  t = jnp.arange(response_mask.shape[1])
  before = step_valid[:, None, :] & (step_positions[:, None, :] < t[:, None])
  turn = jnp.sum(before, axis=-1)  # [B, T] in [0, K]
  token_adv = jnp.take_along_axis(acc, turn, axis=1) + out_n
  return jnp.where(response_mask != 0, token_adv, 0.0)


def _check_step_layout(step_mask, step_positions) -> None:
  """Eagerly checks that valid steps are a prefix with increasing positions."""
  if not (
    _checks.is_concrete(step_mask) and _checks.is_concrete(step_positions)
  ):
    return
  valid = np.asarray(step_mask) != 0
  pos = np.asarray(step_positions)
  for row in range(valid.shape[0]):
    n = int(valid[row].sum())
    if not valid[row, :n].all():
      raise ValueError(
        f'step_mask row {row} must have its valid steps first; got '
        f'{valid[row].astype(int).tolist()}.'
      )
    if np.any(np.diff(pos[row, :n]) <= 0):
      raise ValueError(
        f'step_positions row {row} must increase over valid steps; got '
        f'{pos[row, :n].tolist()}.'
      )
