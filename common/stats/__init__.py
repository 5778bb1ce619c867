"""Paired seeds and bootstrap intervals for method-minus-baseline effects.

Public API:
  paired_effect: mean difference of paired per-seed results with a paired
    bootstrap confidence interval; `.shown` when it excludes zero over
    at least `MIN_SEEDS` (3) seeds.
  Effect: its result.
  mean_std: mean and sample standard deviation over seeds.
  bootstrap_mean_interval: the percentile bootstrap interval of a mean.
  roc_curve, ROC: the ROC of a score against binary labels, with its AUC.
"""

from common.stats.bootstrap import MIN_SEEDS
from common.stats.bootstrap import Effect
from common.stats.bootstrap import bootstrap_mean_interval
from common.stats.bootstrap import mean_std
from common.stats.bootstrap import paired_effect
from common.stats.roc import ROC
from common.stats.roc import roc_curve

__all__ = [
  'MIN_SEEDS',
  'ROC',
  'Effect',
  'bootstrap_mean_interval',
  'mean_std',
  'paired_effect',
  'roc_curve',
]
