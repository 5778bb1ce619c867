"""Tests for common.rl.kl: estimators, controllers, KL-in-reward."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import rl
from tests import tolerances as tol


def test_k1_and_k3_are_unbiased_in_exact_expectation():
  # E_{y~p}[k(y)] computed exactly over a 4-token vocabulary equals KL(p||q)
  # for k1 and k3; k2 is biased (its expectation differs).
  p = np.array([0.1, 0.2, 0.3, 0.4])
  q = np.array([0.4, 0.3, 0.2, 0.1])
  exact = float(np.sum(p * np.log(p / q)))
  logp = jnp.log(jnp.asarray(p, jnp.float32))[None]
  logq = jnp.log(jnp.asarray(q, jnp.float32))[None]
  for name in ('k1', 'k3'):
    expect = float(jnp.sum(p * rl.kl_divergence(logp, logq, name)))
    # log of float32 probabilities, then a 4-term sum: a few ops.
    tol.assert_close(expect, exact, tol.FEW_OPS)
  k2 = float(jnp.sum(p * rl.kl_divergence(logp, logq, 'k2')))
  assert abs(k2 - exact) > 0.01
  assert np.all(np.asarray(rl.kl_divergence(logq, logp, 'k3')) >= 0)


def test_estimator_errors():
  with pytest.raises(ValueError, match="allowed values: 'k1', 'k2', 'k3'"):
    rl.kl_divergence(jnp.zeros((1, 2)), jnp.zeros((1, 2)), 'low_var_kl')
  with pytest.raises(ValueError, match='Shape mismatch'):
    rl.kl_divergence(jnp.zeros((1, 2)), jnp.zeros((1, 3)))


def test_adaptive_controller_in_scan_and_fixed_controller():
  ctrl = rl.adaptive_kl_controller(0.1, target=1.0, horizon=10.0)

  def body(state, kl):
    state = ctrl.update(state, kl, 1)
    return state, state.kl_coef

  final, coefs = jax.jit(lambda s, k: jax.lax.scan(body, s, k))(
    ctrl.init(), jnp.array([2.0, 2.0, 0.5])
  )
  tol.assert_close(coefs, [0.102, 0.10404, 0.10404 * 0.98])
  assert isinstance(final, rl.KLControllerState)
  fixed = rl.fixed_kl_controller(0.05)
  # A fixed controller returns its float32 coefficient unchanged.
  np.testing.assert_array_equal(
    fixed.update(fixed.init(), 100.0, 1000).kl_coef, np.float32(0.05)
  )


def test_controller_errors():
  with pytest.raises(ValueError, match='target must be > 0'):
    rl.adaptive_kl_controller(0.1, target=0.0, horizon=10.0)
  with pytest.raises(ValueError, match='kl_coef must be >= 0'):
    rl.fixed_kl_controller(-1.0)


class KLVariantsTest(chex.TestCase):
  """Hand-computed cases under jit and without (and pmap where vmapped)."""

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_estimators_hand_case(self):
    logp = jnp.array([[-1.0, -2.0]])
    ref = jnp.array([[-1.5, -2.0]])  # log ratio 0.5 and 0
    # k1 and k2 of dyadic log-probs are exact in float32 (0.5, 0.5^2 / 2).
    kl = self.variant(rl.kl_divergence, static_argnums=2)
    np.testing.assert_array_equal(kl(logp, ref, 'k1'), [[0.5, 0]])
    np.testing.assert_array_equal(kl(logp, ref, 'k2'), [[0.125, 0]])
    chex.assert_shape(kl(logp, ref, 'k3'), logp.shape)
    # k3 = exp(-x) + x - 1 cancels terms of size 1 (magnitude() floors at 1).
    tol.assert_close(
      kl(logp, ref, 'k3'),
      [[math.exp(-0.5) + 0.5 - 1.0, 0.0]],
      tol.FEW_OPS,
    )

  @chex.variants(with_jit=True, without_jit=True)
  def test_adaptive_controller_hand_cases(self):
    ctrl = rl.adaptive_kl_controller(init_kl_coef=0.1, target=6.0, horizon=1e4)
    state = ctrl.init()
    update = self.variant(ctrl.update)
    # error clip(9/6 - 1) = 0.2 -> x (1 + 0.2 * 1000 / 1e4) = x 1.02
    tol.assert_close(update(state, 9.0, 1000).kl_coef, 0.102)
    chex.assert_type(update(state, 9.0, 1000).kl_coef, float)
    # error 6.6/6 - 1 = 0.1 -> x 1.01
    tol.assert_close(update(state, 6.6, 1000).kl_coef, 0.101)
    # error clip(3/6 - 1) = -0.2 -> x 0.98
    tol.assert_close(update(state, 3.0, 1000).kl_coef, 0.098)

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_apply_kl_penalty(self):
    rewards = jnp.array([[0.0, 1.0, 7.0]])
    logp = jnp.array([[-1.0, -2.0, jnp.nan]])
    ref = jnp.array([[-1.5, -1.5, 0.0]])
    mask = jnp.array([[1, 1, 0]])
    penalty = self.variant(rl.apply_kl_penalty, static_argnums=5)
    out, metrics = penalty(rewards, logp, ref, mask, 0.1, 'k1')
    # k1 = [0.5, -0.5]: rewards - 0.1 * kl; padded -> 0.
    tol.assert_close(out, [[-0.05, 1.05, 0.0]])
    # Mean of +0.5 and -0.5: exact cancellation in float32.
    np.testing.assert_array_equal(metrics['kl'], 0.0)
    # With a controller state as beta.
    state = rl.fixed_kl_controller(0.2).init()
    out2, metrics2 = penalty(rewards, logp, ref, mask, state.kl_coef, 'k2')
    tol.assert_close(out2, [[-0.025, 0.975, 0.0]])
    tol.assert_close(metrics2['kl'], 0.125)
