"""Entropy-detector ROC: `common.stats.roc_curve` vs SciPy.

The peer is SciPy's Mann-Whitney U statistic, `U / (n_pos * n_neg)`, which
is the ROC AUC with ties counted one half. Both run on the same synthetic
detector scores (positives shifted up, many ties from rounding); the AUCs
are asserted equal, then the median wall time of each is printed.

  python -m experiments.benchmarks.rlvr_backdoor_roc
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats as scipy_stats

from common import stats


def _median_ms(fn, repeats):
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return 1e3 * float(np.median(times))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--n', type=int, default=2000)
  ap.add_argument('--repeats', type=int, default=5)
  args = ap.parse_args()
  rng = np.random.default_rng(0)
  labels = rng.random(args.n) < 0.3
  scores = np.round(rng.normal(labels * 0.8, 1.0), 1)
  ours = stats.roc_curve(scores, labels).auc
  u = scipy_stats.mannwhitneyu(scores[labels], scores[~labels]).statistic
  peer = u / (labels.sum() * (~labels).sum())
  assert abs(ours - peer) < 1e-9, (ours, peer)
  t_ours = _median_ms(lambda: stats.roc_curve(scores, labels), args.repeats)
  t_peer = _median_ms(
    lambda: scipy_stats.mannwhitneyu(scores[labels], scores[~labels]),
    args.repeats,
  )
  print(
    f'AUC {ours:.4f} (both); roc_curve {t_ours:.2f} ms, scipy {t_peer:.2f} ms'
  )
  print(
    f'rlvr_backdoor_roc: time_ratio={t_ours / t_peer:.2f} '
    f'(full ROC with every threshold / SciPy Mann-Whitney AUC only, '
    f'n={args.n})'
  )


if __name__ == '__main__':
  main()
