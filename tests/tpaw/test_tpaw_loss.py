"""TPAW loss: SPIN special case, hand-computed alpha/beta, gradients."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tpaw
from common import rl
from tests import tolerances as tol


def softplus(z):
  return math.log1p(math.exp(z))


# Two members. lam = 0.5:
#   P_y   = 0.5 * (-2 - [-1, -3]) = [-0.5, +0.5]  -> alpha = [eta, 1]
#   P_gen = 0.5 * (-4 - [-4, -5]) = [0, +0.5]
#   z (eta = 6) = [6 * -0.5 - 0, 0.5 - 0.5] = [-3, 0]
#   m = P_y - P_gen = [-0.5, 0]; beta = softmax(-0.5 m) = softmax([0.25, 0])
PT = jnp.array([-2.0])
PG = jnp.array([-4.0])
TT = jnp.array([[-1.0, -3.0]])
TG = jnp.array([[-4.0, -5.0]])
E = math.exp(0.25)
BETA = [E / (E + 1), 1 / (E + 1)]
MEMBER = [softplus(3.0), math.log(2.0)]
KW = dict(lam=0.5, eta=6.0, gamma=0.5)


class TPAWLossTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_hand_computed_alpha_beta(self):
    fn = self.variant(lambda *a: tpaw.tpaw_losses(*a, **KW))
    losses, parts = fn(PT, PG, TT, TG)
    tol.assert_close(parts['target_rewards'], [[-0.5, 0.5]])
    tol.assert_close(parts['generated_rewards'], [[0.0, 0.5]])
    np.testing.assert_array_equal(parts['alpha'], [[6.0, 1.0]])  # a branch
    tol.assert_close(parts['beta'], [BETA], tol.FEW_OPS)
    tol.assert_close(parts['member_losses'], [MEMBER], tol.FEW_OPS)
    want = BETA[0] * MEMBER[0] + BETA[1] * MEMBER[1]
    tol.assert_close(losses, [want], tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_team_of_one_eta_one_is_spin(self):
    b = 5
    rng = np.random.default_rng(0)
    pt, pg, rt, rg = (
      jnp.asarray(rng.normal(-10, 3, b), jnp.float32) for _ in range(4)
    )
    fn = self.variant(
      lambda *a: tpaw.tpaw_losses(*a, lam=0.1, eta=1.0, gamma=0.5)[0]
    )
    got = fn(pt, pg, rt[:, None], rg[:, None])
    want = rl.spin_loss(pt, pg, rt, rg, beta=0.1)
    # The same softplus of lam * (a - b) - lam * (c - d) vs lam * h.
    tol.assert_close(got, want, tol.FEW_OPS, scale=1.0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_masked_members_contribute_nothing(self):
    fn = self.variant(lambda *a: tpaw.tpaw_losses(*a, **KW))
    inf = jnp.array([[-jnp.inf]])
    losses, parts = fn(
      PT, PG, jnp.concatenate([TT, inf], 1), jnp.concatenate([TG, inf], 1),
      jnp.array([True, True, False]),
    )  # fmt: skip
    want, _ = tpaw.tpaw_losses(PT, PG, TT, TG, **KW)
    tol.assert_close(losses, want, tol.FEW_OPS)
    assert parts['beta'][0, 2] == 0.0  # masked: exactly no weight
    d = tpaw.diagnostics(parts)
    assert np.isfinite(np.asarray(d['target_reward']))

  @chex.variants(with_jit=True, without_jit=True)
  def test_diagnostics_hand_case(self):
    fn = self.variant(
      lambda *a: tpaw.diagnostics(tpaw.tpaw_losses(*a[:4], **KW)[1], *a[4:])
    )
    d = fn(PT, PG, TT, TG, PT, PT - 1.0)
    tol.assert_close(d['target_reward'], 0.0)  # mean(-0.5, 0.5)
    tol.assert_close(d['frac_alpha_eta'], 0.5)
    tol.assert_close(d['margin'], -0.25)
    entropy = -sum(p * math.log(p) for p in BETA)
    tol.assert_close(d['beta_entropy'], entropy, tol.FEW_OPS)
    tol.assert_close(d['reward_accuracy'], 0.0)  # -0.5 < 0, 0.5 == 0.5
    tol.assert_close(d['team_size'], 2.0)
    tol.assert_close(d['target_drift'], 1.0)


def _grads(eta, policy_target):
  def loss(pt, pg):
    return tpaw.tpaw_losses(
      pt, pg, jnp.array([[-2.0]]), jnp.array([[-3.0]]), lam=0.5, eta=eta,
      gamma=0.5,
    )[0][0]  # fmt: skip

  return jax.grad(loss, argnums=(0, 1))(jnp.array([policy_target]), PG[:1])


def test_eta_branch_scales_the_target_gradient_by_eta():
  # P_y = 0.5 (-2.5 + 2) = -0.25 <= 0: alpha = eta, and d/d log pi(y) is
  # -sigmoid(-z) * eta * lam while d/d log pi(y') is +sigmoid(-z) * lam.
  gt, gg = _grads(6.0, -2.5)
  tol.assert_close(gt / -gg, [6.0], tol.FEW_OPS)
  z = 6.0 * -0.25 - 0.5 * (-4.0 + 3.0)
  tol.assert_close(gt, [-6.0 * 0.5 / (1 + math.exp(z))], tol.FEW_OPS)
  # P_y = 0.5 (-1.5 + 2) = 0.25 > 0: alpha = 1, the two terms balance.
  gt, gg = _grads(6.0, -1.5)
  tol.assert_close(gt / -gg, [1.0], tol.FEW_OPS)


def test_beta_is_under_stop_gradient():
  # With beta held constant the gradient is sum_j beta_j d member_j.
  def loss(pt):
    return tpaw.tpaw_losses(pt, PG, TT, TG, **KW)[0][0]

  g = jax.grad(loss)(PT)
  # d member_j / d pt = -sigmoid(-z_j) alpha_j lam, z = [-3, 0].
  dm = [-6.0 * 0.5 / (1 + math.exp(-3.0)), -1.0 * 0.5 / 2.0]
  tol.assert_close(g, [BETA[0] * dm[0] + BETA[1] * dm[1]], tol.FEW_OPS)


@pytest.mark.parametrize(
  'flag, value, same', [('target_reweighting', False, {'eta': 1.0}),
                        ('player_weighting', False, {'gamma': 0.0})],
)  # fmt: skip
def test_ablation_flags_equal_their_hyperparameter_settings(flag, value, same):
  rng = np.random.default_rng(1)
  args = [jnp.asarray(rng.normal(-5, 2, (4,)), jnp.float32) for _ in range(2)]
  args += [
    jnp.asarray(rng.normal(-5, 2, (4, 3)), jnp.float32) for _ in range(2)
  ]
  off, _ = tpaw.tpaw_losses(*args, **KW, **{flag: value})
  by_value, _ = tpaw.tpaw_losses(*args, **{**KW, **same})
  # eta = 1 makes alpha 1; softmax of equal logits is exactly 1/n.
  tol.assert_close(off, by_value)


@pytest.mark.parametrize(
  'kw, match',
  [
    ({'eta': 0.0}, 'eta must be a finite number > 0'),
    ({'eta': -1.0}, 'eta must be a finite number > 0'),
    ({'gamma': -0.1}, 'gamma must be a finite number >= 0'),
    ({'lam': 0.0}, 'lam must be a finite number > 0'),
  ],
)
def test_bad_hyperparameters(kw, match):
  with pytest.raises(ValueError, match=match):
    tpaw.tpaw_losses(PT, PG, TT, TG, **{**KW, **kw})


def test_bad_shapes():
  with pytest.raises(ValueError, match=r'\[B, N\]'):
    tpaw.tpaw_losses(PT, PG, TT[0], TG, **KW)
  with pytest.raises(ValueError, match='disagree on B'):
    tpaw.tpaw_losses(jnp.zeros(3), PG, TT, TG, **KW)
  with pytest.raises(ValueError, match='same'):
    tpaw.tpaw_losses(PT, PG, TT, TG[:, :1], **KW)


class WeightsVariantsTest(chex.TestCase):
  """The two weightings under jit and without (and pmap where vmapped)."""

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_uniform_and_player_weights_with_mask(self):
    w = self.variant(lambda m: tpaw.uniform_weights((1, 3), m))(
      jnp.array([1, 1, 0])
    )
    np.testing.assert_array_equal(w, [[0.5, 0.5, 0.0]])  # dyadic
    beta = self.variant(tpaw.player_weights)(
      jnp.array([[0.0, 2.0, 5.0]]), 0.5, jnp.array([1, 1, 0])
    )
    chex.assert_shape(beta, (1, 3))
    e = math.exp(-1.0)
    tol.assert_close(beta, [[1 / (1 + e), e / (1 + e), 0.0]], tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_target_weights_boundary_is_inclusive(self):
    alpha = self.variant(tpaw.target_weights)(
      jnp.array([[-1.0, 0.0, 1e-3]]), 6.0
    )
    np.testing.assert_array_equal(alpha, [[6.0, 6.0, 1.0]])
