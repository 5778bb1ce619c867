"""Stage 2: the planner itself: its wall-clock latency and its gap to the
exact optimum on small random rounds.

Latency is measured afresh on every run (a wall-clock number is never
served from a cache); the gap study is one cached unit.
"""

from __future__ import annotations

import math
import time

import numpy as np

from common import metrics as cmetrics
from dhp import baselines as bl
from dhp import lengths as ln
from dhp import planner as pl


def latency(config, cost):
  """Planner wall time (ms, median and max over repeats) on this CPU.

  Returns:
    (rows [devices, batch, median ms, max ms, rounds, planner / simulated
    step], series {'batch B': {'x': log2(devices), 'y': median ms}}).
  """
  lat = config.latency
  rows, series = [], {}
  for b in lat.batch_sizes:
    for n in lat.cluster_sizes:
      lengths = ln.long_tail(b, config.seed)
      times = []
      for _ in range(lat.repeats):
        start = time.perf_counter()
        plan = pl.plan_batch(lengths, n, config.simulation.capacity, cost)
        times.append((time.perf_counter() - start) * 1e3)
      med = float(np.median(times))
      ratio = med / plan.total_ms
      rows.append(
        [
          n,
          b,
          round(med, 2),
          round(max(times), 2),
          len(plan.rounds),
          f'{ratio:.1e}',
        ]
      )
      s = series.setdefault(f'batch {b}', {'x': [], 'y': []})
      s['x'].append(math.log2(n))
      s['y'].append(med)
  return rows, series


def _gap_study(config, cost):
  gap_cfg = config.gap
  rng = np.random.default_rng(config.seed)
  gaps, gaps_paper, infeasible = [], [], 0
  for trial in range(gap_cfg.instances):
    n = int(rng.integers(2, gap_cfg.max_devices + 1))
    b = int(rng.integers(2, gap_cfg.max_sequences + 1))
    lengths = ln.long_tail(b, config.seed + trial, max_len=gap_cfg.capacity * n)
    exact = bl.exact_round(lengths, n, gap_cfg.capacity, cost)
    dhp = pl.plan_round(lengths, n, gap_cfg.capacity, cost)
    paper = pl.plan_round(
      lengths, n, gap_cfg.capacity, cost, refine=False, pack_scales=(1.0,)
    )
    if exact is None:
      continue
    if dhp is None:
      infeasible += 1
      continue
    gaps.append(dhp.estimated_ms / exact.estimated_ms - 1)
    if paper is not None:
      gaps_paper.append(paper.estimated_ms / exact.estimated_ms - 1)
  gaps = np.array(gaps)
  gaps_paper = np.array(gaps_paper)
  return {
    'instances': len(gaps),
    'bfd_infeasible': infeasible,
    'mean_gap': float(gaps.mean()),
    'max_gap': float(gaps.max()),
    'within_5pct': float((gaps <= 0.05).mean()),
    'paper_mode_mean_gap': float(gaps_paper.mean()),
    'paper_mode_max_gap': float(gaps_paper.max()),
  }


def optimality_gap(config, cost, cache_root):
  """DHP's and paper mode's makespan over the exact optimum (cached).

  Returns:
    {'instances', 'bfd_infeasible', 'mean_gap', 'max_gap', 'within_5pct',
    'paper_mode_mean_gap', 'paper_mode_max_gap'}; gaps are ratios - 1.
  """
  cache = cmetrics.ResultCache(
    cache_root, {'seed': config.seed, 'cost': config.cost, 'gap': config.gap}
  )
  return cache.get_or_compute('gap', lambda: _gap_study(config, cost))
