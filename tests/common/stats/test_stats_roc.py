"""common.stats.roc_curve on a hand-computed case and against SciPy."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from common import stats


def test_roc_on_hand_computed_case():
  scores = [0.9, 0.8, 0.8, 0.3, 0.1]
  labels = [True, True, False, False, True]
  roc = stats.roc_curve(scores, labels)
  np.testing.assert_array_equal(roc.thresholds, [np.inf, 0.9, 0.8, 0.3, 0.1])
  np.testing.assert_allclose(roc.tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1])
  np.testing.assert_allclose(roc.fpr, [0, 0, 0.5, 1, 1])
  # Mann-Whitney: pairs (pos, neg) = 3 x 2 = 6; wins: 0.9 beats both,
  # 0.8 beats 0.3 and ties 0.8 (1/2), 0.1 beats none: 3.5 / 6.
  assert roc.auc == pytest.approx(3.5 / 6, rel=1e-9)
  assert stats.roc_curve([2.0, 1.0], [True, False]).auc == 1.0


def test_auc_equals_mann_whitney_u():
  rng = np.random.default_rng(0)
  labels = rng.random(300) < 0.4
  scores = np.round(rng.normal(labels * 0.5, 1.0), 1)  # with ties
  u = scipy_stats.mannwhitneyu(scores[labels], scores[~labels]).statistic
  expected = u / (labels.sum() * (~labels).sum())
  assert stats.roc_curve(scores, labels).auc == pytest.approx(expected, 1e-12)


@pytest.mark.parametrize(
  'scores,labels,match',
  [
    ([1.0, 2.0], [True, True], 'positives and negatives'),
    ([1.0, np.nan], [True, False], 'finite'),
    ([1.0, 2.0, 3.0], [True, False], 'one 1-D shape'),
  ],
)
def test_bad_input_is_named(scores, labels, match):
  with pytest.raises(ValueError, match=match):
    stats.roc_curve(scores, labels)
