"""Step and outcome rewards: hand-computed values and placement."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from pica import rewards as RW


def test_over_search_penalty():
  np.testing.assert_allclose(
    RW.over_search_penalty(5), [0, 0, 0, 0.45, 0.675], rtol=1e-6
  )
  np.testing.assert_allclose(
    RW.over_search_penalty(3, alpha=1.0, gamma=2.0, free=1), [0, 2, 4]
  )


def test_linear_step_rewards_hand_computed():
  h = jnp.array([[0.1, 0.5, 0.2, 0.3, 0.0]])
  valid = jnp.array([[1, 1, 1, 1, 0]], bool)
  r = RW.step_rewards(h, valid, RW.RewardConfig())
  want = [
    1.3 * (0.9 - 0.55),
    1.3 * (0.5 - 0.55),
    1.3 * (0.8 - 0.55),
    1.3 * (0.7 - 0.55 - 0.45),
    0.0,
  ]
  np.testing.assert_allclose(r[0], want, rtol=1e-5, atol=1e-7)


def test_pbrs_step_rewards_hand_computed():
  h = jnp.array([[0.5, 0.2], [1.0, 0.0]])
  valid = jnp.array([[1, 1], [1, 0]], bool)
  cfg = RW.RewardConfig(step_form='pbrs', coef=1.0)
  r = RW.step_rewards(h, valid, cfg)
  np.testing.assert_allclose(r[0], [math.log(0.5), math.log(0.8)], rtol=1e-6)
  # h = 1 is clipped, stays finite; the sum telescopes to log S_K
  assert np.isfinite(r[1, 0]) and r[1, 1] == 0
  np.testing.assert_allclose(r[0].sum(), math.log(0.5 * 0.8), rtol=1e-6)


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


def test_token_rewards_placement():
  mask = jnp.array([[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]], bool)
  ends = jnp.array([[1, 3], [0, -1]])
  step = jnp.array([[0.2, -0.1], [0.5, 0.0]])
  cfg = RW.RewardConfig()
  r = RW.token_rewards(
    jnp.array([1.0, -1.0]), jnp.array([True, False]), mask, ends, step, cfg
  )
  want = np.zeros((2, 8))
  want[0, 1], want[0, 3], want[0, 5] = 0.2, -0.1, 1.5
  want[1, 2] = -1.5  # malformed row: outcome penalty only, no step reward
  np.testing.assert_allclose(r, want, rtol=1e-6)
  # outcome only
  r0 = RW.token_rewards(jnp.array([0.5, 0.0]), jnp.array([True, True]), mask)
  np.testing.assert_allclose(r0[0, 5], 0.75)
  # step reward on the last token adds to the outcome
  r1 = RW.token_rewards(
    jnp.array([1.0, 1.0]),
    jnp.array([True, True]),
    mask,
    jnp.array([[5], [-1]]),
    jnp.array([[0.1], [0.0]]),
  )
  np.testing.assert_allclose(r1[0, 5], 1.6, rtol=1e-6)


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
