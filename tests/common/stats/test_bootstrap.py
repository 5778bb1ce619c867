"""Tests for common/stats: paired bootstrap intervals."""

import numpy as np
import pytest

from common import stats


def test_two_seeds_interval_is_the_two_differences():
  # Resample means of {d1, d2} are d1, (d1+d2)/2, d2 with probability
  # 1/4, 1/2, 1/4, so the 2.5% and 97.5% quantiles are d1 and d2.
  eff = stats.paired_effect([0.5, 0.9], [0.4, 0.6], num_resamples=4000)
  np.testing.assert_allclose(eff.mean, 0.2, rtol=1e-12)
  np.testing.assert_allclose([eff.low, eff.high], [0.1, 0.3], rtol=1e-12)
  assert eff.num_seeds == 2 and eff.confidence == 0.95
  # Two seeds never show an effect, whatever the interval.
  assert not eff.shown
  assert eff.describe().endswith(
    '(95%, 2 seeds; not shown: fewer than 3 seeds)'
  )


def test_constant_difference_gives_a_point_interval():
  eff = stats.paired_effect([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
  np.testing.assert_allclose([eff.mean, eff.low, eff.high], 0.5, rtol=1e-12)
  assert eff.shown


def test_interval_holding_zero_is_not_shown():
  eff = stats.paired_effect([0.3, 0.1, 0.2], [0.2, 0.2, 0.2])
  assert eff.low < 0.0 < eff.high
  assert not eff.shown
  assert 'not shown' in eff.describe()
  assert eff.describe().endswith(
    '(95%, 3 seeds; not shown: the interval holds 0)'
  )


def test_negative_effect_is_shown_when_it_excludes_zero():
  eff = stats.paired_effect([0.1, 0.2, 0.15], [0.5, 0.6, 0.55])
  assert eff.high < 0 and eff.shown


def test_interval_is_deterministic_and_nested_by_level():
  rng = np.random.default_rng(0)
  m, b = rng.normal(1, 1, 8), rng.normal(0.5, 1, 8)
  a = stats.paired_effect(m, b, seed=3)
  assert a == stats.paired_effect(m, b, seed=3)
  wide = stats.paired_effect(m, b, confidence=0.99, seed=3)
  assert wide.low <= a.low <= a.mean <= a.high <= wide.high


def test_matches_the_normal_interval_for_many_seeds():
  # For S large the percentile bootstrap of a mean approaches
  # mean +- 1.96 * sd / sqrt(S) (sd with ddof=0, the bootstrap's plug-in).
  rng = np.random.default_rng(1)
  d = rng.normal(0.3, 1.0, 400)
  low, high = stats.bootstrap_mean_interval(d, num_resamples=20_000)
  half = 1.96 * d.std() / np.sqrt(d.size)
  np.testing.assert_allclose([low, high], [d.mean() - half, d.mean() + half],
                             atol=0.1 * half)  # fmt: skip


def test_mean_std():
  np.testing.assert_allclose(stats.mean_std([1.0, 2.0, 3.0]), (2.0, 1.0))
  assert stats.mean_std([4.0]) == (4.0, 0.0)


def test_bad_input_is_named():
  with pytest.raises(ValueError, match='method has 2 seeds but baseline has 3'):
    stats.paired_effect([1, 2], [1, 2, 3])
  with pytest.raises(
    ValueError, match=r'baseline has non-finite values at seeds \[1\]'
  ):
    stats.paired_effect([1, 2], [1, float('nan')])
  with pytest.raises(ValueError, match='non-empty 1-D'):
    stats.paired_effect([], [])
  with pytest.raises(ValueError, match=r'confidence=1.5 must be in \(0, 1\)'):
    stats.paired_effect([1], [0], confidence=1.5)
