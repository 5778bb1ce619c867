"""KL estimators against a reference policy, KL controllers, KL penalty.

Per-token estimators of KL(pi || pi_ref) from samples y ~ pi, with
`log_ratio = logp - ref_logp` (Schulman, "Approximating KL divergence"):

* `k1`: `log_ratio` (unbiased, high variance, can be negative);
* `k2`: `0.5 * log_ratio**2` (biased, low variance, >= 0);
* `k3`: `exp(-log_ratio) + log_ratio - 1`, i.e.
  `exp(ref - logp) - (ref - logp) - 1` (unbiased, low variance, >= 0;
  verl's `low_var_kl`, TRL's GRPO KL term).

The KL coefficient is `beta` (TRL/Tunix name). It is used either as a loss
term `beta * agg(kl)` (GRPO) or subtracted from per-token rewards before
computing advantages (`apply_kl_penalty`, PPO-style). Controllers follow the
optax pattern: a `KLController(init, update)` pair of pure functions over a
`KLControllerState` NamedTuple.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from common.rl import _checks
from common.rl import advantages as advantages_lib

KL_ESTIMATORS = ('k1', 'k2', 'k3')


def kl_divergence(
  logprobs: jax.Array, ref_logprobs: jax.Array, estimator: str = 'k3'
) -> jax.Array:
  """Per-token KL estimate (see module docstring), float32.

  Args:
    logprobs: `[B, T]` log-probs of the sampled tokens under the policy.
    ref_logprobs: `[B, T]` log-probs of the same tokens under the reference.
    estimator: one of `KL_ESTIMATORS`.

  Returns:
    `[B, T]` float32 per-token KL estimates (unmasked; aggregate with a mask).
  """
  _checks.check_choice('KL estimator', estimator, KL_ESTIMATORS)
  _checks.check_same_shape(
    ['logprobs', 'ref_logprobs'], [logprobs, ref_logprobs]
  )
  log_ratio = logprobs.astype(jnp.float32) - ref_logprobs.astype(jnp.float32)
  if estimator == 'k1':
    return log_ratio
  if estimator == 'k2':
    return 0.5 * jnp.square(log_ratio)
  return jnp.expm1(-log_ratio) + log_ratio


class KLControllerState(NamedTuple):
  """State of a KL controller: the current coefficient `beta` (scalar)."""

  kl_coef: jax.Array


class KLController(NamedTuple):
  """A pair of pure functions, as optax's `GradientTransformation`.

  Attributes:
    init: `() -> KLControllerState`.
    update: `(state, current_kl, n_steps) -> KLControllerState`, where
      `current_kl` is the measured mean KL of the last batch and `n_steps`
      the number of samples (or steps) it covers.
  """

  init: Callable[[], KLControllerState]
  update: Callable[..., KLControllerState]


def fixed_kl_controller(kl_coef: float) -> KLController:
  """A controller whose coefficient never changes."""
  if kl_coef < 0:
    raise ValueError(f'kl_coef must be >= 0; got {kl_coef}.')

  def init():
    return KLControllerState(jnp.asarray(kl_coef, jnp.float32))

  def update(state, current_kl, n_steps):
    del current_kl, n_steps
    return state

  return KLController(init, update)


def adaptive_kl_controller(
  init_kl_coef: float, target: float, horizon: float
) -> KLController:
  """Adaptive KL controller of Ziegler et al. (2019), as in trlx and verl.

  `error = clip(current_kl / target - 1, -0.2, 0.2)`;
  `kl_coef <- kl_coef * (1 + error * n_steps / horizon)`.

  Args:
    init_kl_coef: starting coefficient (> 0).
    target: KL the controller steers towards (> 0).
    horizon: number of samples over which the error is corrected (> 0).

  Returns:
    A `KLController`.
  """
  for name, val in (
    ('init_kl_coef', init_kl_coef),
    ('target', target),
    ('horizon', horizon),
  ):
    if not val > 0:
      raise ValueError(f'{name} must be > 0; got {val}.')

  def init():
    return KLControllerState(jnp.asarray(init_kl_coef, jnp.float32))

  def update(state, current_kl, n_steps):
    error = jnp.clip(
      jnp.asarray(current_kl, jnp.float32) / target - 1.0, -0.2, 0.2
    )
    mult = 1.0 + error * jnp.asarray(n_steps, jnp.float32) / horizon
    return KLControllerState(state.kl_coef * mult)

  return KLController(init, update)


def apply_kl_penalty(
  token_rewards: jax.Array,
  logprobs: jax.Array,
  ref_logprobs: jax.Array,
  mask: jax.Array,
  beta: float | jax.Array,
  estimator: str = 'k1',
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Subtracts `beta * KL` from per-token rewards (KL-in-reward, PPO/verl).

  `rewards'_t = r_t - beta * kl_t` on valid tokens; masked tokens are 0.
  Use the sampling policy's log-probs (`old_logprobs`) as `logprobs`.

  Args:
    token_rewards: `[B, T]` per-token rewards (e.g. outcome on last token).
    logprobs: `[B, T]` policy log-probs.
    ref_logprobs: `[B, T]` reference log-probs.
    mask: `[B, T]` tokens that carry a KL penalty (e.g. excluding retrieved
      tokens).
    beta: coefficient (float or a `KLControllerState.kl_coef`).
    estimator: one of `KL_ESTIMATORS` (verl's default `kl` is `k1`).

  Returns:
    `(rewards, metrics)`: rewards `[B, T]`; metrics `kl` = the mean over
    rows of each row's token-mean KL (what `adaptive_kl_controller.update`
    takes as `current_kl`) and `kl_coef`.
  """
  _checks.check_rank('token_rewards', token_rewards, 2, '[B, T]')
  _checks.check_same_shape(
    ['token_rewards', 'logprobs', 'ref_logprobs', 'mask'],
    [token_rewards, logprobs, ref_logprobs, mask],
  )
  kl = kl_divergence(logprobs, ref_logprobs, estimator)
  valid = mask != 0
  rewards = jnp.where(valid, token_rewards.astype(jnp.float32) - beta * kl, 0.0)
  row_kl = advantages_lib.masked_mean(kl, mask, axis=-1)
  metrics = {
    'kl': jnp.mean(row_kl),
    'kl_coef': jnp.asarray(beta, jnp.float32),
  }
  return rewards, metrics
