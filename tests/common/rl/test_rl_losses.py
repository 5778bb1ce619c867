"""Tests for common.rl.losses: aggregation modes, PPO-clip, value loss."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from common import rl
from tests import tolerances as tol

NAN = float('nan')
LOSS = jnp.array([[1.0, 2.0, 3.0, NAN], [4.0, NAN, NAN, NAN], [NAN] * 4])
MASK = jnp.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])


def test_aggregate_loss_max_len_empty_and_errors():
  tol.assert_close(
    rl.aggregate_loss(LOSS, MASK, 'dr_grpo', max_len=5), 10.0 / 15
  )
  for mode in rl.LOSS_AGG_MODES:  # no token: the constant 0, exactly
    assert rl.aggregate_loss(LOSS, jnp.zeros_like(MASK), mode) == 0.0
  with pytest.raises(ValueError, match="'token-mean', 'seq-mean-token-mean'"):
    rl.aggregate_loss(LOSS, MASK, 'sum')
  with pytest.raises(ValueError, match='Shape mismatch'):
    rl.aggregate_loss(LOSS, MASK[:, :3], 'token-mean')


def _ppo_case():
  ratios = jnp.array([[1.5, 0.5, 1.1, 0.7, 9.0]])
  old = jnp.full((1, 5), -2.0)
  logp = old + jnp.log(ratios)
  adv = jnp.array([[1.0, 1.0, -1.0, -1.0, NAN]])
  mask = jnp.array([[1, 1, 1, 1, 0]])
  return logp, old, adv, mask


def test_ppo_policy_loss_errors():
  logp, old, adv, mask = _ppo_case()
  with pytest.raises(ValueError, match='epsilon must lie in'):
    rl.ppo_policy_loss(logp, old, adv, mask, epsilon=1.5)
  with pytest.raises(ValueError, match='delta .* must be > 1 \\+ epsilon_high'):
    rl.ppo_policy_loss(logp, old, adv, mask, 0.2, 0.28, delta=1.1)
  with pytest.raises(ValueError, match='advantages has 1 non-finite'):
    rl.ppo_policy_loss(logp, old, adv.at[0, 0].set(NAN), mask)


def test_ppo_policy_loss_vmap_matches_loop():
  rng = np.random.default_rng(1)
  logp = jnp.asarray(rng.normal(size=(3, 2, 5)) * 0.3 - 2, jnp.float32)
  old = jnp.asarray(rng.normal(size=(3, 2, 5)) * 0.3 - 2, jnp.float32)
  adv = jnp.asarray(rng.normal(size=(3, 2, 5)), jnp.float32)
  mask = jnp.asarray(rng.integers(0, 2, size=(3, 2, 5)))
  fn = lambda a, b, c, d: rl.ppo_policy_loss(a, b, c, d, 0.2, 0.28)[0]
  batched = jax.jit(jax.vmap(fn))(logp, old, adv, mask)
  for i in range(3):
    # vmap may reorder the masked sums: float32 rounding of O(1) terms.
    tol.assert_close(
      batched[i], fn(logp[i], old[i], adv[i], mask[i]), tol.FEW_OPS
    )


class LossesVariantsTest(chex.TestCase):
  """Hand-computed cases under jit and without (and pmap where vmapped)."""

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  @parameterized.parameters(
    ('token-mean', 10.0 / 4),  # (1 + 2 + 3 + 4) / 4 tokens
    ('seq-mean-token-mean', 3.0),  # rows 2 and 4; the empty row is dropped
    ('seq-mean-token-sum', 5.0),  # rows 6 and 4
    ('dr_grpo', 10.0 / (3 * 4)),  # sum / (B * T)
  )
  def test_aggregate_loss_modes(self, mode, expected):
    agg = self.variant(lambda x, m: rl.aggregate_loss(x, m, mode))
    # Sums of small integers and one division: float32 rounding only.
    tol.assert_close(agg(LOSS, MASK), expected)
    chex.assert_shape(agg(LOSS, MASK), ())

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_ppo_policy_loss_asymmetric_clip_hand_case(self):
    logp, old, adv, mask = _ppo_case()
    ppo = self.variant(rl.ppo_policy_loss, static_argnums=(4, 5))
    loss, m = ppo(logp, old, adv, mask, 0.2, 0.28)
    chex.assert_tree_all_finite((loss, m))
    # Per token: max(-A r, -A clip(r, 0.8, 1.28)):
    # r=1.5,A=1 -> -1.28 (clipped); r=0.5,A=1 -> -0.5;
    # r=1.1,A=-1 -> 1.1; r=0.7,A=-1 -> 0.8 (clipped).
    # Ratios come through exp(log r): a few float32 ops.
    tol.assert_close(loss, (-1.28 - 0.5 + 1.1 + 0.8) / 4, tol.FEW_OPS)
    assert float(m['clip_fraction']) == 0.5  # 2 of 4 tokens: exact
    tol.assert_close(
      m['approx_kl'], -math.log(1.5 * 0.5 * 1.1 * 0.7) / 4, tol.FEW_OPS
    )
    tol.assert_close(m['ratio_mean'], 0.95, tol.FEW_OPS)
    tol.assert_close(m['ratio_max'], 1.5, tol.FEW_OPS)
    # Symmetric clip: r=1.5 is clipped at 1.2 instead.
    sym, _ = ppo(logp, old, adv, mask, 0.2, None)
    tol.assert_close(sym, (-1.2 - 0.5 + 1.1 + 0.8) / 4, tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_ppo_policy_loss_gradient_zero_on_clipped_tokens(self):
    logp, old, adv, mask = _ppo_case()
    grad = self.variant(
      jax.grad(lambda lp: rl.ppo_policy_loss(lp, old, adv, mask, 0.2, 0.28)[0])
    )(logp)
    # d/dlogp of -A r / 4 is -A r / 4 on unclipped tokens, 0 on clipped ones.
    tol.assert_close(grad, [[0.0, -0.5 / 4, 1.1 / 4, 0.0, 0.0]], tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_ppo_dual_clip(self):
    old = jnp.zeros((1, 2))
    logp = jnp.log(jnp.array([[4.0, 4.0]]))
    adv = jnp.array([[-1.0, 1.0]])
    mask = jnp.ones((1, 2))
    ppo = self.variant(
      lambda *a, delta: rl.ppo_policy_loss(*a, 0.2, delta=delta),
      static_argnames='delta',
    )
    loss, m = ppo(logp, old, adv, mask, delta=3.0)
    # A<0, r=4: max(4, 1.2) = 4 -> min(4, 3) = 3. A>0, r=4: -1.2 (clip).
    tol.assert_close(loss, (3.0 - 1.2) / 2, tol.FEW_OPS)  # r = exp(log 4)
    assert float(m['dual_clip_fraction']) == 0.5  # 1 of 2 tokens: exact
    no_dual, _ = ppo(logp, old, adv, mask, delta=None)
    tol.assert_close(no_dual, (4.0 - 1.2) / 2, tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_clipped_value_loss_hand_case(self):
    values = jnp.array([[1.0, 2.0, NAN]])
    old = jnp.array([[0.5, 2.0, 0.0]])
    returns = jnp.array([[2.0, 1.0, 0.0]])
    mask = jnp.array([[1, 1, 0]])
    value_loss = self.variant(rl.clipped_value_loss, static_argnums=4)
    loss, m = value_loss(values, old, returns, mask, 0.2)
    # t0: v_clip = 0.7, max(1, 1.69) / 2 = 0.845; t1: max(1, 1) / 2 = 0.5.
    tol.assert_close(loss, (0.845 + 0.5) / 2)
    assert float(m['value_clip_fraction']) == 0.5  # 1 of 2 tokens: exact
    plain, _ = value_loss(values, old, returns, mask, None)
    tol.assert_close(plain, 0.5)
    grad = self.variant(
      jax.grad(lambda v: rl.clipped_value_loss(v, old, returns, mask, 0.2)[0]),
    )(values)
    # t0 is clipped (no gradient); t1: d/dv 0.5 (v - 1)^2 / 2 = (2 - 1) / 2.
    tol.assert_close(grad, [[0.0, 0.5, 0.0]])
    with pytest.raises(ValueError, match='clip_range must be > 0'):
      rl.clipped_value_loss(values, old, returns, mask, clip_range=0.0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_sequence_level_importance_sampling_gspo(self):
    old = jnp.zeros((2, 3))
    # Row 0: mean log ratio (log 2 + 0) / 2 -> rho = sqrt(2) > 1.28, clipped;
    # row 1: mean log ratio log 1.1 -> rho = 1.1 on its two valid tokens.
    logp = jnp.array([[math.log(2.0), 0.0, NAN], [math.log(1.21), 0.0, NAN]])
    adv = jnp.ones((2, 3))
    mask = jnp.array([[1, 1, 0], [1, 1, 0]])
    gspo = lambda *a: rl.ppo_policy_loss(
      *a, 0.2, 0.28, importance_sampling_level='sequence'
    )
    loss, m = self.variant(gspo)(logp, old, adv, mask)
    # Sequence ratios are exp(mean log ratio): a few float32 ops.
    tol.assert_close(loss, (2 * -1.28 + 2 * -1.1) / 4, tol.FEW_OPS)
    tol.assert_close(m['ratio_mean'], (2 * 2**0.5 + 2 * 1.1) / 4, tol.FEW_OPS)
    assert float(m['clip_fraction']) == 0.5  # 2 of 4 tokens: exact
    grad = self.variant(jax.grad(lambda lp: gspo(lp, old, adv, mask)[0]))(logp)
    # Row 1 is unclipped: d/dlogp_t of -(2 * 1.1) / 4 = -1.1 / 4 per token.
    tol.assert_close(grad, [[0, 0, 0], [-1.1 / 4, -1.1 / 4, 0]], tol.FEW_OPS)
    with pytest.raises(ValueError, match="allowed values: 'token', 'sequence'"):
      rl.ppo_policy_loss(
        logp, old, adv, mask, importance_sampling_level='sentence'
      )
