"""Tests for common.rl.advantages against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import rl
from tests import tolerances as tol

REWARDS = jnp.array([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0])


def test_group_advantages_group_scaling():
  # Group 1: mean 0.25, Bessel std 0.5 -> [1.5, -0.5, -0.5, -0.5];
  # group 2 has equal rewards -> 0.
  adv = rl.group_advantages(REWARDS, num_generations=4)
  # Mean, sqrt of a variance, division (+ eps 1e-6 in the std): a few ops.
  tol.assert_close(adv, [1.5, -0.5, -0.5, -0.5, 0, 0, 0, 0], tol.FEW_OPS)


def test_group_advantages_population_std():
  adv = rl.group_advantages(REWARDS, 4, ddof=0, eps=0.0)
  std = math.sqrt(0.75 / 4)
  tol.assert_close(adv[:2], [0.75 / std, -0.25 / std], tol.FEW_OPS)


def test_group_advantages_batch_and_none_scaling():
  # Batch std (Bessel) of REWARDS: mean 9/8, squared deviations
  # 1/64 + 3 * 81/64 + 4 * 49/64 = 6.875, so std = sqrt(6.875 / 7).
  adv = rl.group_advantages(REWARDS, 4, scale_rewards='batch')
  std = math.sqrt(6.875 / 7)
  tol.assert_close(
    adv, np.array([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0]) / std, tol.FEW_OPS
  )
  none = rl.group_advantages(REWARDS, 4, scale_rewards='none')
  # r - mean of dyadic rewards: exact in float32.
  np.testing.assert_array_equal(none, [0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0])
  np.testing.assert_array_equal(rl.dr_grpo_advantages(REWARDS, 4), none)


def test_rloo_advantages():
  adv = rl.rloo_advantages(REWARDS, 4)
  third = 1.0 / 3.0
  tol.assert_close(adv, [1.0, -third, -third, -third, 0, 0, 0, 0])
  # Identity: RLOO = G / (G - 1) * (r - group mean).
  tol.assert_close(adv, 4 / 3 * rl.dr_grpo_advantages(REWARDS, 4))


def test_group_advantages_errors():
  with pytest.raises(ValueError, match="allowed values: 'group', 'batch'"):
    rl.group_advantages(REWARDS, 4, scale_rewards='std')
  with pytest.raises(ValueError, match='not a multiple of num_generations=3'):
    rl.group_advantages(REWARDS, 3)
  with pytest.raises(ValueError, match='num_generations must be an int >= 2'):
    rl.rloo_advantages(REWARDS, 1)
  with pytest.raises(ValueError, match=r'shape \[B\]'):
    rl.group_advantages(REWARDS.reshape(2, 4), 4)
  with pytest.raises(ValueError, match='rewards has 1 non-finite'):
    rl.group_advantages(REWARDS.at[3].set(jnp.nan), 4)


def test_group_advantages_jit_and_vmap():
  stacked = jnp.stack([REWARDS, 2 * REWARDS])
  fn = lambda r: rl.group_advantages(r, 4)
  out = jax.jit(jax.vmap(fn))(stacked)
  tol.assert_close(out[0], fn(REWARDS), tol.FEW_OPS)
  # Scaling rewards by 2 leaves group-normalised advantages unchanged (up to
  # the std's eps, 1e-6 relative to a std of 0.5).
  tol.assert_close(out[1], out[0], tol.FEW_OPS)


def test_broadcast_to_tokens():
  out = rl.broadcast_to_tokens(
    jnp.array([2.0, -1.0]), jnp.array([[1, 1, 0], [0, 1, 1]])
  )
  np.testing.assert_array_equal(out, [[2, 2, 0], [0, -1, -1]])  # a copy
  with pytest.raises(ValueError, match='disagree on B'):
    rl.broadcast_to_tokens(jnp.zeros(3), jnp.ones((2, 4)))


def test_whiten_masked():
  x = jnp.array([[1.0, 2.0, 3.0, jnp.nan]])
  mask = jnp.array([[1, 1, 1, 0]])
  # Mean 2, Bessel variance 1.
  # Whitening multiplies by rsqrt(var + 1e-8): rounding on values of size 3.
  tol.assert_close(rl.whiten(x, mask), [[-1, 0, 1, 0]])
  tol.assert_close(rl.whiten(x, mask, shift_mean=False), [[1, 2, 3, 0]])
  tol.assert_close(rl.masked_var(x, mask), 1.0)
  tol.assert_close(rl.masked_var(x, mask, unbiased=False), 2 / 3)


# GAE hand case: gamma 0.9, lam 0.8 (gamma * lam = 0.72).
# t=2: delta = 1 - 0.7 = 0.3; A = 0.3
# t=1: delta = 0.9 * 0.7 - 0.6 = 0.03; A = 0.03 + 0.72 * 0.3 = 0.246
# t=0: delta = 0.9 * 0.6 - 0.5 = 0.04; A = 0.04 + 0.72 * 0.246 = 0.21712
GAE_ADV = [0.21712, 0.246, 0.3]


def test_gae_masked_tail_stops_bootstrapping():
  rewards = jnp.array([[0.0, 0.0, 1.0, 5.0]])  # reward under padding ignored
  values = jnp.array([[0.5, 0.6, 0.7, jnp.nan]])
  mask = jnp.array([[1, 1, 1, 0]])
  adv, ret = rl.gae_advantages(rewards, values, mask, gamma=0.9, lam=0.8)
  # A 3-step recursion: float32 rounding of O(1) terms.
  tol.assert_close(adv, [GAE_ADV + [0.0]])
  tol.assert_close(ret, [[0.71712, 0.846, 1.0, 0.0]])


def test_gae_skips_interior_masked_tokens():
  rewards = jnp.array([[0.0, 9.0, 0.0, 1.0]])
  values = jnp.array([[0.5, jnp.inf, 0.6, 0.7]])
  mask = jnp.array([[1, 0, 1, 1]])
  adv, _ = rl.gae_advantages(rewards, values, mask, gamma=0.9, lam=0.8)
  tol.assert_close(adv, [[GAE_ADV[0], 0.0, GAE_ADV[1], GAE_ADV[2]]])


def test_gae_bootstrap_value_and_monte_carlo_identity():
  rewards = jnp.array([[0.0, 1.0]])
  values = jnp.array([[0.5, 0.4]])
  mask = jnp.ones((1, 2))
  adv, ret = rl.gae_advantages(
    rewards, values, mask, bootstrap_value=jnp.array([2.0])
  )
  # gamma = lam = 1: A_t = sum of future rewards + bootstrap - V_t.
  tol.assert_close(adv, [[2.5, 2.6]])
  tol.assert_close(ret, [[3.0, 3.0]])


def _gae_reference(rewards, values, gamma, lam):
  """Plain loop, full mask (verl's original recursion)."""
  b, t = rewards.shape
  adv = np.zeros((b, t))
  last = np.zeros(b)
  for i in reversed(range(t)):
    next_v = values[:, i + 1] if i + 1 < t else 0.0
    delta = rewards[:, i] + gamma * next_v - values[:, i]
    last = delta + gamma * lam * last
    adv[:, i] = last
  return adv


def test_gae_matches_loop_reference_and_vmap():
  rng = np.random.default_rng(0)
  rewards = rng.normal(size=(3, 6)).astype(np.float32)
  values = rng.normal(size=(3, 6)).astype(np.float32)
  adv, _ = jax.jit(
    lambda r, v: rl.gae_advantages(r, v, jnp.ones_like(r), 0.95, 0.9)
  )(rewards, values)
  # 6-step recursion on O(1) normals vs a float64 loop.
  tol.assert_close(adv, _gae_reference(rewards, values, 0.95, 0.9), tol.FEW_OPS)
  # Left-aligned padding of length 2: equals the loop on the first 4 tokens.
  mask = np.ones((3, 6)).astype(np.float32)
  mask[:, 4:] = 0
  fn = lambda r, v, m: rl.gae_advantages(r[None], v[None], m[None], 0.95, 0.9)
  adv_v, _ = jax.vmap(fn)(rewards, values, mask)
  tol.assert_close(
    adv_v[:, 0, :4],
    _gae_reference(rewards[:, :4], values[:, :4], 0.95, 0.9),
    tol.FEW_OPS,
  )
  np.testing.assert_array_equal(adv_v[:, 0, 4:], 0.0)  # masked: constant 0


def test_gae_errors():
  ones = jnp.ones((1, 3))
  with pytest.raises(ValueError, match='gamma must lie in'):
    rl.gae_advantages(ones, ones, ones, gamma=1.5)
  with pytest.raises(ValueError, match='Shape mismatch'):
    rl.gae_advantages(ones, jnp.ones((1, 4)), ones)
  with pytest.raises(ValueError, match='values has 1 non-finite'):
    rl.gae_advantages(ones, ones.at[0, 1].set(jnp.nan), ones)
  with pytest.raises(ValueError, match='bootstrap_value'):
    rl.gae_advantages(ones, ones, ones, bootstrap_value=jnp.ones(2))


def test_group_normalize_pooled_and_single_entry():
  values = jnp.array([[1.0, 3.0], [5.0, jnp.nan]])
  mask = jnp.array([[1, 1], [1, 0]])
  # Pool {1, 3, 5}: mean 3, population std sqrt(8/3).
  z = 2.0 / math.sqrt(8.0 / 3.0)
  tol.assert_close(
    rl.group_normalize(values, mask, 2), [[-z, 0], [z, 0]], tol.FEW_OPS
  )
  single = rl.group_normalize(
    jnp.array([[2.0, 7.0], [0.0, 0.0]]), jnp.array([[1, 0], [0, 0]]), 2
  )
  np.testing.assert_array_equal(single, np.zeros((2, 2)))


def test_turn_level_advantages_separate():
  outcome = jnp.array([1.0, 0.0])  # normalised: [1, -1]
  steps = jnp.array([[0.2, 0.6], [0.4, jnp.nan]])
  step_mask = jnp.array([[1, 1], [1, 0]])
  positions = jnp.array([[1, 3], [2, 0]])
  response_mask = jnp.array([[0, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
  adv = rl.turn_level_advantages(
    outcome, steps, step_mask, positions, response_mask, 2, gamma=0.5
  )
  # Steps pool {0.2, 0.6, 0.4}: normalised row 0 [-z, z], row 1 [0] with
  # z = 0.2 / std, std = sqrt(0.08 / 3). Row 0 turn sums (gamma 0.5):
  # A_1 = z, A_0 = -z + 0.5 z = -0.5 z.
  z = 0.2 / math.sqrt(0.08 / 3)
  row0 = [0.0, 1 - 0.5 * z, 1 + z, 1 + z, 1.0, 0.0]
  row1 = [-1.0] * 6
  # Two normalisations (sqrt, division) and a discounted sum.
  tol.assert_close(adv, [row0, row1], tol.FEW_OPS)


def test_turn_level_advantages_joint_matches_numpy():
  outcome = np.array([1.0, 0.0], np.float32)
  steps = np.array([[0.2, 0.6], [0.4, 0.0]], np.float32)
  step_mask = np.array([[1, 1], [1, 0]])
  positions = np.array([[1, 3], [2, 0]])
  adv = rl.turn_level_advantages(
    outcome,
    steps,
    step_mask,
    positions,
    np.ones((2, 5)),
    2,
    gamma=1.0,
    norm_mode='joint',
  )
  pool = np.array([0.2, 0.6, 1.0, 0.4, 0.0])
  norm = lambda x: (x - pool.mean()) / (pool.std() + 1e-8)
  row0 = [norm(0.2) + norm(0.6)] * 2 + [norm(0.6)] * 2 + [0.0]
  row0 = np.array(row0) + norm(1.0)
  row1 = np.array([norm(0.4)] * 3 + [0.0] * 2) + norm(0.0)
  tol.assert_close(adv, [row0, row1], tol.FEW_OPS)


def test_turn_level_advantages_layout_errors():
  args = dict(
    outcome_rewards=jnp.zeros(2),
    step_rewards=jnp.zeros((2, 2)),
    response_mask=jnp.ones((2, 4)),
    num_generations=2,
  )
  with pytest.raises(ValueError, match='valid steps first'):
    rl.turn_level_advantages(
      step_mask=jnp.array([[0, 1], [1, 1]]),
      step_positions=jnp.array([[0, 1], [0, 1]]),
      **args,
    )
  with pytest.raises(ValueError, match='must increase'):
    rl.turn_level_advantages(
      step_mask=jnp.ones((2, 2)),
      step_positions=jnp.array([[2, 1], [0, 1]]),
      **args,
    )
  with pytest.raises(ValueError, match="allowed values: 'separate', 'joint'"):
    rl.turn_level_advantages(
      step_mask=jnp.ones((2, 2)),
      step_positions=jnp.array([[0, 1], [0, 1]]),
      norm_mode='mixed',
      **args,
    )
