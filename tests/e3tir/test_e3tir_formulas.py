"""E3-TIR formulas on hand-computed cases (jit and no-jit)."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from e3tir import aagd
from e3tir import advantages
from e3tir import anchors
from e3tir import filtering
from e3tir import loss
from e3tir import roi
from tests import tolerances as tol

# One prompt: 2 self rollouts, the expert, then 2 anchors x 3 branches.
REWARDS = [0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
GROUPS = [0] * 9
SUBTREES = [-1, -1, -1, 0, 0, 0, 1, 1, 1]
# Global: mean 4/9, unbiased var ((4 * 25 + 5 * 16) / 81) / 8 = 5/18.
G_STD = math.sqrt(5 / 18)
G_HI, G_LO = (5 / 9) / G_STD, -(4 / 9) / G_STD
# Subtrees [1, 0, 1] and [0, 0, 1]: means 2/3 and 1/3, var 1/3 each.
T_STD = math.sqrt(1 / 3)
A_GLOBAL = [G_LO, G_LO, G_HI, G_HI, G_LO, G_HI, G_LO, G_LO, G_HI]
A_TREE = [0, 0, 0, (1 / 3) / T_STD, -(2 / 3) / T_STD, (1 / 3) / T_STD,
          -(1 / 3) / T_STD, -(1 / 3) / T_STD, (2 / 3) / T_STD]  # fmt: skip


class HybridAdvantageTest(chex.TestCase):
  def _run(self, combine, mu=0.5):
    fn = self.variant(
      lambda r, g, s: advantages.hybrid_advantages(
        r, g, s, 1, 2, combine=combine, mu=mu, eps=0.0
      )
    )
    return fn(jnp.array(REWARDS), jnp.array(GROUPS), jnp.array(SUBTREES))

  @chex.variants(with_jit=True, without_jit=True)
  def test_sum(self):
    want = [a + b for a, b in zip(A_GLOBAL, A_TREE, strict=True)]
    tol.assert_close(self._run('sum'), want, tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_mix(self):
    mu = 0.25
    want = [
      a if s < 0 else mu * a + (1 - mu) * b
      for a, b, s in zip(A_GLOBAL, A_TREE, SUBTREES, strict=True)
    ]
    tol.assert_close(self._run('mix', mu), want, tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_global_ablation(self):
    tol.assert_close(self._run('global'), A_GLOBAL, tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_excluded_rows_and_singletons(self):
    # Row 2 excluded (id -1); rows 0, 1 are a group of two; row 3 alone.
    fn = self.variant(
      lambda r, g: advantages.segment_normalize(r, g, 2, eps=0.0)
    )
    out = fn(jnp.array([1.0, 3.0, 7.0, 5.0]), jnp.array([0, 0, -1, 1]))
    s = math.sqrt(2.0)  # unbiased std of [1, 3]
    tol.assert_close(out, [-1 / s, 1 / s, 0.0, 0.0])

  def test_unknown_combine(self):
    with pytest.raises(ValueError, match='combine'):
      advantages.hybrid_advantages(
        jnp.zeros(2), jnp.zeros(2, int), -jnp.ones(2, int), 1, 1, 'max'
      )


class AAGDTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_small_tree(self):
    # Rows: the expert (all prefix, A < 0), a winning branch (prefix 2,
    # A > 0) and a losing branch (prefix 2, A < 0). Token 3 of the branches
    # is a tool observation (loss_mask already False).
    loss_mask = jnp.array([[1, 1, 1, 0, 1], [1, 1, 1, 0, 1], [1, 1, 1, 0, 1]])
    prefix = jnp.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 0, 0, 0]])
    adv = jnp.array([-0.5, 1.0, -2.0])
    fn = self.variant(aagd.aagd_mask)
    got = fn(loss_mask, prefix, adv)
    want = [[0, 0, 0, 0, 0], [1, 1, 1, 0, 1], [0, 0, 1, 0, 1]]
    # Booleans: exact.
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want, bool))

  def test_disabled_keeps_mask(self):
    m = jnp.array([[True, False]])
    np.testing.assert_array_equal(
      aagd.aagd_mask(m, jnp.ones_like(m), jnp.array([-1.0]), enabled=False), m
    )

  @chex.variants(with_jit=True, without_jit=True)
  def test_observation_mask(self):
    # ids: 5 = <result>, 6 = </result>; an unclosed block runs to the end.
    toks = jnp.array([[1, 5, 2, 6, 3, 5, 4]])
    fn = self.variant(aagd.observation_mask)
    got = fn(toks, jnp.array([5]), jnp.array([6]))
    np.testing.assert_array_equal(
      np.asarray(got), [[False, True, True, True, False, True, True]]
    )


class MixedLossTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_hand_computed(self):
    # Tokens: on-policy inside the clip, on-policy clipped (ratio e^0.5 >
    # 1.2 with A > 0), expert prefix with the shaped ratio, one masked.
    logp = jnp.array([[math.log(0.5), 0.0, math.log(0.3), -1.0]])
    old = jnp.array([[math.log(0.5), -0.5, -9.0, -1.0]])
    adv = jnp.array([[2.0, 1.0, -1.0, 3.0]])
    mask = jnp.array([[True, True, True, False]])
    prefix = jnp.array([[False, False, True, False]])
    cfg = loss.MixedLossConfig(epsilon=0.2, prefix_ratio='shaped', gamma=0.1)
    fn = self.variant(lambda *a: loss.mixed_policy_loss(*a, config=cfg))
    total, m = fn(logp, old, adv, mask, prefix)
    on = [-2.0 * 1.0, -1.0 * 1.2]
    off = [1.0 * 0.3 / (0.3 + 0.1)]
    tol.assert_close(total, (sum(on) + sum(off)) / 3, tol.FEW_OPS)
    tol.assert_close(m['prefix_ratio_mean'], 0.75, tol.FEW_OPS)
    tol.assert_close(m['on_policy_tokens'], 2.0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_old_prefix_ratio_gradient(self):
    # rho = exp(logp - sg(old)); at logp = old, d(-A rho)/dlogp = -A.
    def f(lp):
      return loss.mixed_policy_loss(
        lp, jnp.array([[-0.7]]), jnp.array([[2.0]]), jnp.array([[True]]),
        jnp.array([[True]]),
      )[0]  # fmt: skip

    g = self.variant(jax.grad(f))(jnp.array([[-0.7]]))
    tol.assert_close(g, [[-2.0]], tol.FEW_OPS)

  def test_bad_config(self):
    with pytest.raises(ValueError, match='prefix_ratio'):
      loss.MixedLossConfig(prefix_ratio='full')


class AnchorTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_topk(self):
    ent = jnp.array([[0.1, 2.0, 0.5, 3.0, 1.0], [1.0, 1.0, 0.2, 0.0, 0.0]])
    cand = jnp.array([[0, 1, 1, 0, 1], [1, 1, 1, 1, 1]], bool)
    got = self.variant(lambda e, c: anchors.topk_anchors(e, c, 2))(ent, cand)
    # Row 0: position 3 is not a candidate. Row 1: tie -> earlier first.
    np.testing.assert_array_equal(np.asarray(got), [[1, 4], [0, 1]])

  @chex.variants(with_jit=True, without_jit=True)
  def test_sampled_distinct_candidates(self):
    ent = jnp.tile(jnp.arange(8.0), (16, 1))
    cand = jnp.tile(jnp.arange(8) % 2 == 1, (16, 1))
    fn = self.variant(
      lambda r, e, c: anchors.sampled_anchors(r, e, c, 3, temperature=1.0)
    )
    got = np.asarray(fn(jax.random.key(0), ent, cand))
    assert np.all(got % 2 == 1)
    assert all(len(set(r)) == 3 for r in got.tolist())
    # A low temperature recovers the top-k.
    cold = anchors.sampled_anchors(jax.random.key(1), ent, cand, 3, 1e-4)
    np.testing.assert_array_equal(np.asarray(cold)[0], [7, 5, 3])

  def test_unknown_mode(self):
    with pytest.raises(ValueError, match='anchor mode'):
      anchors.select_anchors(None, jnp.zeros((1, 2)), jnp.ones((1, 2)), 1, 'x')


class FilterGateRoiTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_filters(self):
    self_r = jnp.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    keep = self.variant(filtering.variance_keep)(self_r)
    np.testing.assert_array_equal(np.asarray(keep), [False, True, False])
    gate = self.variant(filtering.best_expert_gate)(self_r)
    np.testing.assert_array_equal(np.asarray(gate), [True, False, False])
    sub = jnp.array([[[1.0, 0.0], [0.0, 0.0]]])  # means 0.5 and 0
    rel = self.variant(filtering.relative_keep)(
      sub, jnp.ones_like(sub, bool), jnp.array([[0.0, 0.5]]), 0.1
    )
    # Self mean 0.25: 0.5 >= 0.35 kept, 0 dropped.
    np.testing.assert_array_equal(np.asarray(rel), [[True, False]])

  def test_roi(self):
    # (0.5 - 0.1) / (1 * 10 + 0.5 * 40) = 0.4 / 30.
    tol.assert_close(roi.roi(0.5, 0.1, 10, 40, 1.0, 0.5), 0.4 / 30)
    assert roi.relative_roi(0.3, 0.2) == pytest.approx(1.5)
    assert math.isnan(roi.relative_roi(0.3, 0.0))
    with pytest.raises(ValueError, match='cost'):
      roi.roi(1.0, 0.0, 0, 0)
