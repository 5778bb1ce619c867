"""Step and outcome rewards: hand-computed values and placement."""

import math

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from pica import rewards as RW


def test_outcome_scores_f1_em_and_format():
  texts = [
    '<search> q </search> <information>x</information> '
    '<answer> the Red Fox </answer>',
    '<answer> Red </answer>',
    '<search> q </search>',  # no answer
    '<answer> Red Fox </answer> trailing',
    '<search> </search> <answer> Red Fox </answer>',  # empty query
  ]
  gold = [['Red Fox', 'RF']] * 5
  s, ok = RW.outcome_scores(texts, gold, RW.RewardConfig())
  # F1('red', 'red fox') = 2 * 1 * 0.5 / 1.5
  np.testing.assert_allclose(s, [1.0, 2 / 3, -1, -1, -1], rtol=1e-6)
  np.testing.assert_array_equal(ok, [1, 1, 0, 0, 0])
  s, _ = RW.outcome_scores(texts[:2], gold[:2], RW.RewardConfig(metric='em'))
  np.testing.assert_allclose(s, [1.0, 0.0])
  with pytest.raises(ValueError, match='2 responses but 1'):
    RW.outcome_scores(texts[:2], gold[:1], RW.RewardConfig())


def test_config_errors():
  with pytest.raises(ValueError, match='step_form'):
    RW.RewardConfig(step_form='log')
  with pytest.raises(ValueError, match='metric'):
    RW.RewardConfig(metric='bleu')
  with pytest.raises(ValueError, match='needs RewardConfig.step_form'):
    RW.step_rewards(
      jnp.zeros((1, 1)), jnp.ones((1, 1), bool), RW.RewardConfig(step_form=None)
    )
  with pytest.raises(ValueError, match=r'\[B, K\]'):
    RW.step_rewards(
      jnp.zeros((1, 2)), jnp.ones((1, 3), bool), RW.RewardConfig()
    )


class RewardsVariantsTest(chex.TestCase):
  """Rewards under jit and without (and pmap where vmapped)."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_over_search_penalty(self):
    penalty = self.variant(RW.over_search_penalty, static_argnums=(0, 3))
    np.testing.assert_allclose(penalty(5), [0, 0, 0, 0.45, 0.675], rtol=1e-6)
    np.testing.assert_allclose(penalty(3, 1.0, 2.0, 1), [0, 2, 4])

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_linear_step_rewards_hand_computed(self):
    h = jnp.array([[0.1, 0.5, 0.2, 0.3, 0.0]])
    valid = jnp.array([[1, 1, 1, 1, 0]], bool)
    step = self.variant(lambda *a: RW.step_rewards(*a, RW.RewardConfig()))
    r = step(h, valid)
    chex.assert_equal_shape([r, h])
    want = [
      1.3 * (0.9 - 0.55),
      1.3 * (0.5 - 0.55),
      1.3 * (0.8 - 0.55),
      1.3 * (0.7 - 0.55 - 0.45),
      0.0,
    ]
    np.testing.assert_allclose(r[0], want, rtol=1e-5, atol=1e-7)

  @chex.variants(with_jit=True, without_jit=True)
  def test_pbrs_step_rewards_hand_computed(self):
    h = jnp.array([[0.5, 0.2], [1.0, 0.0]])
    valid = jnp.array([[1, 1], [1, 0]], bool)
    cfg = RW.RewardConfig(step_form='pbrs', coef=1.0)
    r = self.variant(lambda *a: RW.step_rewards(*a, cfg))(h, valid)
    np.testing.assert_allclose(r[0], [math.log(0.5), math.log(0.8)], rtol=1e-6)
    # h = 1 is clipped, stays finite; the sum telescopes to log S_K
    chex.assert_tree_all_finite(r)
    assert r[1, 1] == 0
    np.testing.assert_allclose(r[0].sum(), math.log(0.5 * 0.8), rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_token_rewards_placement(self):
    mask = jnp.array([[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]], bool)
    ends = jnp.array([[1, 3], [0, -1]])
    step = jnp.array([[0.2, -0.1], [0.5, 0.0]])
    cfg = RW.RewardConfig()
    token_rewards = self.variant(lambda *a: RW.token_rewards(*a, config=cfg))
    r = token_rewards(
      jnp.array([1.0, -1.0]), jnp.array([True, False]), mask, ends, step
    )
    chex.assert_equal_shape([r, mask])
    want = np.zeros((2, 8))
    want[0, 1], want[0, 3], want[0, 5] = 0.2, -0.1, 1.5
    want[1, 2] = -1.5  # malformed row: outcome penalty only, no step reward
    np.testing.assert_allclose(r, want, rtol=1e-6)
    # outcome only
    r0 = token_rewards(jnp.array([0.5, 0.0]), jnp.array([True, True]), mask)
    np.testing.assert_allclose(r0[0, 5], 0.75)
    # step reward on the last token adds to the outcome
    r1 = token_rewards(
      jnp.array([1.0, 1.0]),
      jnp.array([True, True]),
      mask,
      jnp.array([[5], [-1]]),
      jnp.array([[0.1], [0.0]]),
    )
    np.testing.assert_allclose(r1[0, 5], 1.6, rtol=1e-6)


class RewardsShapeContractTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_t_input_and_mismatched_mask_raise_chex_errors(self):
    step = self.variant(lambda *a: RW.step_rewards(*a, RW.RewardConfig()))
    with self.assertRaisesRegex(AssertionError, r'\[Chex\].*hazard \(3,\)'):
      step(jnp.zeros(3), jnp.ones(3, bool))
    with self.assertRaisesRegex(AssertionError, 'valid \\(1, 3\\)'):
      step(jnp.zeros((1, 2)), jnp.ones((1, 3), bool))
    tokens = self.variant(RW.token_rewards)
    with self.assertRaisesRegex(AssertionError, 'response_mask \\(8,\\)'):
      tokens(jnp.zeros(1), jnp.ones(1, bool), jnp.ones(8, bool))
    with self.assertRaisesRegex(AssertionError, 'disagree on B'):
      tokens(jnp.zeros(3), jnp.ones(3, bool), jnp.ones((2, 8), bool))
