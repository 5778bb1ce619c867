"""Tests for common.rl.advantages against hand-computed values."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import rl
from tests import tolerances as tol

REWARDS = jnp.array([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0])


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


# GAE hand case: gamma 0.9, lam 0.8 (gamma * lam = 0.72).
# t=2: delta = 1 - 0.7 = 0.3; A = 0.3
# t=1: delta = 0.9 * 0.7 - 0.6 = 0.03; A = 0.03 + 0.72 * 0.3 = 0.246
# t=0: delta = 0.9 * 0.6 - 0.5 = 0.04; A = 0.04 + 0.72 * 0.246 = 0.21712
GAE_ADV = [0.21712, 0.246, 0.3]


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


class AdvantagesVariantsTest(chex.TestCase):
  """Hand-computed cases under jit and without (and pmap where vmapped)."""

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_group_advantages_group_scaling(self):
    # Group 1: mean 0.25, Bessel std 0.5 -> [1.5, -0.5, -0.5, -0.5];
    # group 2 has equal rewards -> 0.
    adv = self.variant(lambda r: rl.group_advantages(r, num_generations=4))(
      REWARDS
    )
    chex.assert_shape(adv, REWARDS.shape)
    chex.assert_type(adv, float)
    # Mean, sqrt of a variance, division (+ eps 1e-6 in the std): a few ops.
    tol.assert_close(adv, [1.5, -0.5, -0.5, -0.5, 0, 0, 0, 0], tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_group_advantages_population_std(self):
    fn = self.variant(lambda r: rl.group_advantages(r, 4, ddof=0, eps=0.0))
    adv = fn(REWARDS)
    std = math.sqrt(0.75 / 4)
    tol.assert_close(adv[:2], [0.75 / std, -0.25 / std], tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_group_advantages_batch_and_none_scaling(self):
    # Batch std (Bessel) of REWARDS: mean 9/8, squared deviations
    # 1/64 + 3 * 81/64 + 4 * 49/64 = 6.875, so std = sqrt(6.875 / 7).
    fn = self.variant(
      lambda r, scale: rl.group_advantages(r, 4, scale_rewards=scale),
      static_argnums=1,
    )
    adv = fn(REWARDS, 'batch')
    std = math.sqrt(6.875 / 7)
    tol.assert_close(
      adv, np.array([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0]) / std, tol.FEW_OPS
    )
    none = fn(REWARDS, 'none')
    # r - mean of dyadic rewards: exact in float32.
    np.testing.assert_array_equal(none, [0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0])
    dr_grpo = self.variant(lambda r: rl.dr_grpo_advantages(r, 4))
    chex.assert_trees_all_equal(dr_grpo(REWARDS), none)

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_rloo_advantages(self):
    adv = self.variant(lambda r: rl.rloo_advantages(r, 4))(REWARDS)
    third = 1.0 / 3.0
    tol.assert_close(adv, [1.0, -third, -third, -third, 0, 0, 0, 0])
    # Identity: RLOO = G / (G - 1) * (r - group mean).
    tol.assert_close(adv, 4 / 3 * rl.dr_grpo_advantages(REWARDS, 4))

  @chex.variants(with_jit=True, without_jit=True)
  def test_broadcast_to_tokens(self):
    out = self.variant(rl.broadcast_to_tokens)(
      jnp.array([2.0, -1.0]), jnp.array([[1, 1, 0], [0, 1, 1]])
    )
    np.testing.assert_array_equal(out, [[2, 2, 0], [0, -1, -1]])  # a copy
    with pytest.raises(ValueError, match='disagree on B'):
      self.variant(rl.broadcast_to_tokens)(jnp.zeros(3), jnp.ones((2, 4)))

  @chex.variants(with_jit=True, without_jit=True)
  def test_whiten_masked(self):
    x = jnp.array([[1.0, 2.0, 3.0, jnp.nan]])
    mask = jnp.array([[1, 1, 1, 0]])
    # Mean 2, Bessel variance 1.
    # Whitening multiplies by rsqrt(var + 1e-8): rounding on values of size 3.
    whiten = self.variant(rl.whiten, static_argnums=2)
    var = self.variant(rl.masked_var, static_argnums=2)
    tol.assert_close(whiten(x, mask, True), [[-1, 0, 1, 0]])
    tol.assert_close(whiten(x, mask, False), [[1, 2, 3, 0]])
    tol.assert_close(var(x, mask, True), 1.0)
    tol.assert_close(var(x, mask, False), 2 / 3)
    tol.assert_close(self.variant(rl.masked_mean)(x, mask), 2.0)

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_gae_masked_tail_stops_bootstrapping(self):
    rewards = jnp.array([[0.0, 0.0, 1.0, 5.0]])  # reward under padding ignored
    values = jnp.array([[0.5, 0.6, 0.7, jnp.nan]])
    mask = jnp.array([[1, 1, 1, 0]])
    gae = self.variant(lambda *a: rl.gae_advantages(*a, gamma=0.9, lam=0.8))
    adv, ret = gae(rewards, values, mask)
    chex.assert_equal_shape([adv, ret, rewards])
    # A 3-step recursion: float32 rounding of O(1) terms.
    tol.assert_close(adv, [GAE_ADV + [0.0]])
    tol.assert_close(ret, [[0.71712, 0.846, 1.0, 0.0]])

  @chex.variants(with_jit=True, without_jit=True)
  def test_gae_skips_interior_masked_tokens(self):
    rewards = jnp.array([[0.0, 9.0, 0.0, 1.0]])
    values = jnp.array([[0.5, jnp.inf, 0.6, 0.7]])
    mask = jnp.array([[1, 0, 1, 1]])
    gae = self.variant(lambda *a: rl.gae_advantages(*a, gamma=0.9, lam=0.8))
    adv, _ = gae(rewards, values, mask)
    tol.assert_close(adv, [[GAE_ADV[0], 0.0, GAE_ADV[1], GAE_ADV[2]]])

  @chex.variants(with_jit=True, without_jit=True)
  def test_gae_bootstrap_value_and_monte_carlo_identity(self):
    rewards = jnp.array([[0.0, 1.0]])
    values = jnp.array([[0.5, 0.4]])
    mask = jnp.ones((1, 2))
    adv, ret = self.variant(rl.gae_advantages)(
      rewards, values, mask, bootstrap_value=jnp.array([2.0])
    )
    # gamma = lam = 1: A_t = sum of future rewards + bootstrap - V_t.
    tol.assert_close(adv, [[2.5, 2.6]])
    tol.assert_close(ret, [[3.0, 3.0]])

  @chex.variants(with_jit=True, without_jit=True)
  def test_group_normalize_pooled_and_single_entry(self):
    values = jnp.array([[1.0, 3.0], [5.0, jnp.nan]])
    mask = jnp.array([[1, 1], [1, 0]])
    # Pool {1, 3, 5}: mean 3, population std sqrt(8/3).
    z = 2.0 / math.sqrt(8.0 / 3.0)
    norm = self.variant(lambda v, m: rl.group_normalize(v, m, 2))
    tol.assert_close(norm(values, mask), [[-z, 0], [z, 0]], tol.FEW_OPS)
    single = norm(
      jnp.array([[2.0, 7.0], [0.0, 0.0]]), jnp.array([[1, 0], [0, 0]])
    )
    np.testing.assert_array_equal(single, np.zeros((2, 2)))

  @chex.variants(with_jit=True, without_jit=True)
  def test_turn_level_advantages_separate(self):
    outcome = jnp.array([1.0, 0.0])  # normalised: [1, -1]
    steps = jnp.array([[0.2, 0.6], [0.4, jnp.nan]])
    step_mask = jnp.array([[1, 1], [1, 0]])
    positions = jnp.array([[1, 3], [2, 0]])
    response_mask = jnp.array([[0, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    fn = self.variant(
      lambda *a: rl.turn_level_advantages(*a, num_generations=2, gamma=0.5)
    )
    adv = fn(outcome, steps, step_mask, positions, response_mask)
    chex.assert_equal_shape([adv, response_mask])
    # Steps pool {0.2, 0.6, 0.4}: normalised row 0 [-z, z], row 1 [0] with
    # z = 0.2 / std, std = sqrt(0.08 / 3). Row 0 turn sums (gamma 0.5):
    # A_1 = z, A_0 = -z + 0.5 z = -0.5 z.
    z = 0.2 / math.sqrt(0.08 / 3)
    row0 = [0.0, 1 - 0.5 * z, 1 + z, 1 + z, 1.0, 0.0]
    row1 = [-1.0] * 6
    # Two normalisations (sqrt, division) and a discounted sum.
    tol.assert_close(adv, [row0, row1], tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_group_normalize_std_floor_silences_rounding_noise(self):
    # Rewards equal up to one float32 ulp (a, b adjacent floats, ~3e-8
    # apart): whatever the summation order, some |x - mean| is >= 1 ulp and
    # std <= 1 ulp, so without a floor the z-scores are >= ulp / (ulp +
    # 1e-8) ~ 0.75; with the floor 1e-4 they are <= ulp / 1e-4 ~ 3e-4.
    a = np.float32(0.3)
    b = np.nextafter(a, np.float32(1.0))
    values = jnp.array([[a], [b], [a], [b]])
    mask = jnp.ones((4, 1))
    raw = self.variant(lambda v, m: rl.group_normalize(v, m, 4))(values, mask)
    floored = self.variant(
      lambda v, m: rl.group_normalize(v, m, 4, std_floor=1e-4)
    )(values, mask)
    assert float(jnp.max(jnp.abs(raw))) > 0.5  # the noise the floor removes
    assert float(jnp.max(jnp.abs(floored))) < 1e-3
    # A real spread is untouched by a floor below its std.
    spread = jnp.array([[0.0], [1.0], [2.0], [3.0]])
    chex.assert_trees_all_close(
      rl.group_normalize(spread, mask, 4, std_floor=1e-4),
      rl.group_normalize(spread, mask, 4),
    )

  def test_group_normalize_rejects_negative_floor(self):
    with self.assertRaisesRegex(ValueError, 'std_floor'):
      rl.group_normalize(jnp.ones((2, 1)), jnp.ones((2, 1)), 2, std_floor=-1)

  @chex.variants(with_jit=True, without_jit=True)
  def test_group_normalize_per_column(self):
    # Column 0 pool {1, 3}: [-1, 1]; column 1 pool {10, 30}: [-1, 1].
    values = jnp.array([[1.0, 10.0], [3.0, 30.0]])
    out = self.variant(
      lambda v, m: rl.group_normalize(v, m, 2, per_column=True)
    )(values, jnp.ones((2, 2)))
    tol.assert_close(out, [[-1.0, -1.0], [1.0, 1.0]], tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_turn_level_per_turn_removes_position_bias(self):
    # Both trajectories succeed (equal outcomes: r^_out = 0). Step rewards
    # depend only on the position (0.8 at turn 0, 0.2 at turn 1), as a
    # hazard model's position bias would. Pooled ('separate') normalisation
    # turns that into +1 / -1 advantages; per-turn gives 0 everywhere.
    outcome = jnp.array([1.0, 1.0])
    steps = jnp.array([[0.8, 0.2], [0.8, 0.2]])
    step_mask = jnp.ones((2, 2))
    positions = jnp.array([[0, 1], [0, 1]])
    resp = jnp.ones((2, 2))
    args = (outcome, steps, step_mask, positions, resp)
    fn = lambda mode: self.variant(
      lambda *a: rl.turn_level_advantages(
        *a, num_generations=2, gamma=0.0, norm_mode=mode
      )
    )(*args)
    tol.assert_close(fn('separate'), [[1.0, -1.0], [1.0, -1.0]], tol.FEW_OPS)
    np.testing.assert_array_equal(fn('per_turn'), np.zeros((2, 2)))

  @chex.variants(with_jit=True, without_jit=True)
  def test_turn_level_step_weight(self):
    # Outcomes [1, 0] -> [1, -1]; steps pool {0, 1} -> [-1, 1] (gamma 0).
    outcome = jnp.array([1.0, 0.0])
    steps = jnp.array([[0.0], [1.0]])
    args = (outcome, steps, jnp.ones((2, 1)), jnp.array([[0], [0]]))
    fn = self.variant(
      lambda *a: rl.turn_level_advantages(
        *a, num_generations=2, step_weight=0.25
      )
    )
    adv = fn(*args, jnp.ones((2, 2)))
    # token 0 is turn 0 (A_0 * 0.25 + r^_out); token 1 is after the last step.
    tol.assert_close(adv, [[0.75, 1.0], [-0.75, -1.0]], tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_turn_level_advantages_joint_matches_numpy(self):
    outcome = np.array([1.0, 0.0], np.float32)
    steps = np.array([[0.2, 0.6], [0.4, 0.0]], np.float32)
    step_mask = np.array([[1, 1], [1, 0]])
    positions = np.array([[1, 3], [2, 0]])
    fn = self.variant(
      lambda *a: rl.turn_level_advantages(
        *a, num_generations=2, gamma=1.0, norm_mode='joint'
      )
    )
    adv = fn(outcome, steps, step_mask, positions, np.ones((2, 5)))
    pool = np.array([0.2, 0.6, 1.0, 0.4, 0.0])
    norm = lambda x: (x - pool.mean()) / (pool.std() + 1e-8)
    row0 = [norm(0.2) + norm(0.6)] * 2 + [norm(0.6)] * 2 + [0.0]
    row0 = np.array(row0) + norm(1.0)
    row1 = np.array([norm(0.4)] * 3 + [0.0] * 2) + norm(0.0)
    tol.assert_close(adv, [row0, row1], tol.FEW_OPS)
