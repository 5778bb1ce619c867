"""ROC curves and their AUC (detectors, reward models, rankings).

`roc_curve(scores, labels)` sweeps every threshold of a score where higher
means "more likely positive"; its `auc` equals the Mann-Whitney probability
P(score_pos > score_neg) + 0.5 P(score_pos = score_neg).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ROC(NamedTuple):
  """An ROC curve over a detector's threshold.

  Attributes:
    thresholds: `[n]` decreasing; a prompt is flagged when its score is
      >= the threshold (the first is +inf: nothing flagged).
    tpr: `[n]` true positive rate at each threshold.
    fpr: `[n]` false positive rate.
    auc: area under the curve (trapezoids; ties count one half, so it
      equals the Mann-Whitney probability P(score_pos > score_neg) +
      0.5 P(=)).
  """

  thresholds: np.ndarray
  tpr: np.ndarray
  fpr: np.ndarray
  auc: float


def roc_curve(scores, labels) -> ROC:
  """The ROC of `scores` (higher = more suspicious) against `labels`.

  Args:
    scores: `[N]` finite detector scores.
    labels: `[N]` bool, True for positives (triggered prompts).

  Returns:
    `ROC`.

  Raises:
    ValueError: on shapes that differ, non-finite scores, or labels
      without both classes.
  """
  s = np.asarray(scores, np.float64)
  y = np.asarray(labels, bool)
  if s.ndim != 1 or s.shape != y.shape:
    raise ValueError(
      f'scores {s.shape} and labels {y.shape} must be one 1-D shape'
    )
  if not np.all(np.isfinite(s)):
    raise ValueError('scores must be finite')
  pos, neg = int(y.sum()), int((~y).sum())
  if pos == 0 or neg == 0:
    raise ValueError(
      f'the ROC needs positives and negatives; got {pos} and {neg}'
    )
  thresholds = np.concatenate([[np.inf], np.unique(s)[::-1]])
  tpr = np.array([(s[y] >= t).sum() / pos for t in thresholds])
  fpr = np.array([(s[~y] >= t).sum() / neg for t in thresholds])
  auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
  return ROC(thresholds, tpr, fpr, auc)
