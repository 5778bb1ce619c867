"""The TPAW loss: team self-play with dual adaptive weighting.

For a triplet `(x, y, y')` (prompt, SFT target, the policy's own earlier
sample) and the frozen team members `j` (checkpoints `theta_j`), each member
defines an implicit reward relative to its own checkpoint

  P_j(x, y) = lambda * (log pi_theta(y|x) - log pi_theta_j(y|x))

and the loss sums a logistic loss per member,

  L = sum_j beta_j * l(alpha_j * P_j(x, y) - P_j(x, y')),
  l(z) = log(1 + exp(-z)) = softplus(-z).

* Target-response reweighting (TRW): `alpha_j = eta` where
  `P_j(x, y) <= 0` (the policy no longer prefers the target over member
  `j`), else 1. `alpha_j` is a constant per example (a branch, no gradient
  flows through the comparison); inside `l` it scales the gradient on
  `log pi_theta(y|x)` by `eta`.
* Main-player weighting (MPW): `beta_j = softmax_j(-gamma * m_j)` over the
  team, `m_j = P_j(x, y) - P_j(x, y')`, under `stop_gradient` (the paper
  uses beta as a weight, not a path for gradients).

With one member, `eta = 1` and `beta = 1` this is SPIN's loss (DPO with the
previous iterate as reference), `common.rl.spin_loss`.

The team is padded to `N_max` members with a mask so that the jitted step
has one shape while the team grows 1 -> N_max: masked members get
`beta = 0` and contribute nothing (not even to the diagnostics).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _check(name, x, rank, dims):
  if jnp.ndim(x) != rank:
    raise ValueError(
      f'{name} must have shape {dims}; got {tuple(jnp.shape(x))}.'
    )


def _concrete(x) -> float | None:
  if isinstance(x, jax.core.Tracer):
    return None
  return float(np.asarray(x))


def check_hyperparameters(lam, eta, gamma) -> None:
  """Raises ValueError for `lam <= 0`, `eta <= 0` or `gamma < 0` (concrete).

  Traced values (hyperparameters are traced in the jitted step) are not
  checked here; the experiment's config schema checks them before any
  work.
  """
  for name, value, ok, allowed in (
    ('lam', lam, lambda v: v > 0, '> 0'),
    ('eta', eta, lambda v: v > 0, '> 0'),
    ('gamma', gamma, lambda v: v >= 0, '>= 0'),
  ):
    v = _concrete(value)
    if v is not None and not (np.isfinite(v) and ok(v)):
      raise ValueError(
        f'tpaw: {name} must be a finite number {allowed}; got {v}.'
      )


def implicit_rewards(
  policy_logps: jax.Array, team_logps: jax.Array, lam
) -> jax.Array:
  """`P_j = lam * (log pi(y|x) - log pi_j(y|x))`, `[B, N]`.

  Args:
    policy_logps: `[B]` sequence log-probs under the current policy.
    team_logps: `[B, N]` the same sequences under each team member.
    lam: lambda (scalar).
  """
  _check('policy_logps', policy_logps, 1, '[B]')
  _check('team_logps', team_logps, 2, '[B, N]')
  if team_logps.shape[0] != policy_logps.shape[0]:
    raise ValueError(
      f'policy_logps [B] and team_logps [B, N] disagree on B: '
      f'{policy_logps.shape} vs {team_logps.shape}.'
    )
  return lam * (
    jnp.asarray(policy_logps, jnp.float32)[:, None]
    - jnp.asarray(team_logps, jnp.float32)
  )


def target_weights(target_rewards: jax.Array, eta) -> jax.Array:
  """TRW: `alpha = eta` where `P_j(x, y) <= 0`, else 1; `[B, N]` constants."""
  decayed = jax.lax.stop_gradient(target_rewards) <= 0
  return jnp.where(decayed, jnp.asarray(eta, jnp.float32), 1.0)


def player_weights(
  margins: jax.Array, gamma, team_mask: jax.Array | None = None
) -> jax.Array:
  """MPW: `beta = softmax_j(-gamma * m_j)` over the valid members, `[B, N]`.

  Args:
    margins: `[B, N]` `m_j = P_j(x, y) - P_j(x, y')`.
    gamma: temperature >= 0 (0: uniform weights).
    team_mask: `[B, N]` or `[N]`, nonzero for members that exist.

  Returns:
    `[B, N]` weights summing to 1 over the valid members of each row (0 on
    masked members), with the gradient stopped.
  """
  _check('margins', margins, 2, '[B, N]')
  logits = -gamma * jax.lax.stop_gradient(margins.astype(jnp.float32))
  if team_mask is not None:
    valid = jnp.broadcast_to(jnp.asarray(team_mask) != 0, margins.shape)
    logits = jnp.where(valid, logits, -jnp.inf)
  return jax.lax.stop_gradient(jax.nn.softmax(logits, axis=-1))


def uniform_weights(shape, team_mask: jax.Array | None = None) -> jax.Array:
  """`beta_j = 1 / n` over the `n` valid members (MPW ablated), `[B, N]`."""
  if team_mask is None:
    return jnp.full(shape, 1.0 / shape[-1], jnp.float32)
  valid = jnp.broadcast_to(jnp.asarray(team_mask) != 0, shape)
  valid = valid.astype(jnp.float32)
  return valid / jnp.maximum(jnp.sum(valid, axis=-1, keepdims=True), 1.0)


def tpaw_losses(
  policy_target_logps: jax.Array,
  policy_generated_logps: jax.Array,
  team_target_logps: jax.Array,
  team_generated_logps: jax.Array,
  team_mask: jax.Array | None = None,
  *,
  lam=0.1,
  eta=6.0,
  gamma=0.5,
  target_reweighting: bool = True,
  player_weighting: bool = True,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Per-example TPAW losses `[B]` and per-member intermediates.

  Args:
    policy_target_logps: `[B]` log pi_theta(y|x) (carries the gradient).
    policy_generated_logps: `[B]` log pi_theta(y'|x).
    team_target_logps: `[B, N]` log pi_theta_j(y|x) of the frozen members.
    team_generated_logps: `[B, N]` log pi_theta_j(y'|x).
    team_mask: `[B, N]` or `[N]`, nonzero for the members that exist (None:
      all `N`).
    lam: lambda, the implicit reward's scale (> 0).
    eta: the TRW weight on a decayed target (> 0; 1 switches TRW off).
    gamma: the MPW temperature (>= 0).
    target_reweighting: apply TRW (False: alpha = 1, the "w/o TRW"
      ablation).
    player_weighting: apply MPW (False: uniform `1 / n`, "w/o MPW").

  Returns:
    `(losses [B], parts)`: `parts` holds `[B, N]` arrays `target_rewards`
    (P_j(x, y)), `generated_rewards`, `alpha`, `beta`, `member_losses` and
    the `[B, N]` float `valid` mask.
  """
  check_hyperparameters(lam, eta, gamma)
  p_y = implicit_rewards(policy_target_logps, team_target_logps, lam)
  p_gen = implicit_rewards(policy_generated_logps, team_generated_logps, lam)
  if p_y.shape != p_gen.shape:
    raise ValueError(
      f'team_target_logps and team_generated_logps must have the same '
      f'[B, N] shape; got {p_y.shape} and {p_gen.shape}.'
    )
  if team_mask is None:
    valid = jnp.ones(p_y.shape, jnp.float32)
  else:
    valid = jnp.broadcast_to(jnp.asarray(team_mask) != 0, p_y.shape)
    valid = valid.astype(jnp.float32)
  alpha = target_weights(p_y, eta) if target_reweighting else jnp.ones_like(p_y)
  if player_weighting:
    beta = player_weights(p_y - p_gen, gamma, valid)
  else:
    beta = uniform_weights(p_y.shape, valid)
  member = jax.nn.softplus(-(alpha * p_y - p_gen))
  # where, not multiply: a masked member's loss may be inf (-inf log-probs).
  losses = jnp.sum(jnp.where(valid > 0, beta * member, 0.0), axis=-1)
  parts = {
    'target_rewards': p_y,
    'generated_rewards': p_gen,
    'alpha': alpha,
    'beta': beta,
    'member_losses': member,
    'valid': valid,
  }
  return losses, parts


def diagnostics(
  parts: dict[str, jax.Array],
  policy_target_logps: jax.Array | None = None,
  sft_target_logps: jax.Array | None = None,
) -> dict[str, jax.Array]:
  """Batch scalars of `tpaw_losses`' parts.

  Returns:
    `target_reward` (mean P_j(x, y) over valid members: does the target
    reward stay >= 0), `generated_reward`, `margin` (mean m_j),
    `frac_alpha_eta` (fraction of valid members with P_j(x, y) <= 0,
    where TRW sets alpha = eta; reported with TRW off too),
    `beta_entropy` (mean entropy of beta in nats; log n is uniform),
    `reward_accuracy` (fraction with P_j(x, y) > P_j(x, y')),
    `team_size` (mean valid members) and, given the SFT model's target
    log-probs, `target_drift` (mean log pi(y|x) - log pi_SFT(y|x)).
  """
  valid = parts['valid']
  count = jnp.maximum(jnp.sum(valid), 1.0)

  def mean(x):
    return jnp.sum(jnp.where(valid > 0, x, 0.0)) / count

  p_y, p_gen, beta = (
    parts['target_rewards'],
    parts['generated_rewards'],
    parts['beta'],
  )
  safe_beta = jnp.where(beta > 0, beta, 1.0)
  entropy = -jnp.sum(jnp.where(beta > 0, beta * jnp.log(safe_beta), 0.0), -1)
  decayed = p_y <= 0
  out = {
    'target_reward': mean(p_y),
    'generated_reward': mean(p_gen),
    'margin': mean(p_y - p_gen),
    'frac_alpha_eta': mean(decayed.astype(jnp.float32)),
    'beta_entropy': jnp.mean(entropy),
    'reward_accuracy': mean((p_y > p_gen).astype(jnp.float32)),
    'team_size': jnp.mean(jnp.sum(valid, axis=-1)),
  }
  if policy_target_logps is not None and sft_target_logps is not None:
    out['target_drift'] = jnp.mean(
      jnp.asarray(policy_target_logps, jnp.float32)
      - jnp.asarray(sft_target_logps, jnp.float32)
    )
  return out
