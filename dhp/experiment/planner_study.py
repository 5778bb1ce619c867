"""Stage 2: the planner itself: its CPU-time latency and its gap to the
exact optimum on small random rounds.

Latency is measured afresh on every run (a timing is never
served from a cache); the gap study is one cached unit.
"""

from __future__ import annotations

import math
import time

import numpy as np

from common import metrics as cmetrics
from dhp import gap_sweep
from dhp import lengths as ln
from dhp import planner as pl


def latency(config, cost):
  """Planner CPU time (ms, median and max over repeats) on this CPU.

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
        start = time.process_time()
        plan = pl.plan_batch(lengths, n, config.simulation.capacity, cost)
        times.append((time.process_time() - start) * 1e3)
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
  """``gap_sweep`` rounds on one node: DHP and paper mode vs the optimum."""
  gap_cfg = config.gap
  one_node = gap_sweep.single_node(cost, gap_cfg.max_devices)
  cases = gap_sweep.sample_instances(
    gap_cfg.instances,
    config.seed,
    sequences=(2, gap_cfg.max_sequences),
    devices=(4, gap_cfg.max_devices),
    utilisation=(gap_cfg.min_utilisation, gap_cfg.max_utilisation),
  )
  optimum = gap_sweep.optima(cases, one_node)
  dhp = gap_sweep.measure(pl.plan_round, cases, one_node, optimum)
  paper = gap_sweep.measure(
    pl.plan_round, cases, one_node, optimum, refine=False, pack_scales=(1.0,)
  )

  def finite(x):
    return float(x) if np.isfinite(x) else None

  return {
    'instances': len(cases),
    'mean_gap': finite(dhp.mean),
    'median_gap': finite(dhp.median),
    'p90_gap': finite(dhp.p90),
    'max_gap': finite(dhp.max),
    'within_1pct': dhp.within_1pct,
    'within_5pct': dhp.within_5pct,
    'no_plan': dhp.no_plan,
    'paper_mode_mean_gap': finite(paper.mean),
    'paper_mode_max_gap': finite(paper.max),
    'paper_mode_within_5pct': paper.within_5pct,
    'paper_mode_no_plan': paper.no_plan,
  }


def optimality_gap(config, cost, cache_root):
  """DHP's and paper mode's makespan over the exact optimum (cached).

  Returns:
    {'instances', 'mean_gap', 'median_gap', 'p90_gap', 'max_gap',
    'within_1pct', 'within_5pct', 'no_plan', 'paper_mode_*'}; gaps are
    makespan / optimum - 1 over ``gap_sweep`` rounds (5 length
    distributions, memory utilisation min..max), a "no plan" counts as
    +inf (reported as None).
  """
  cache = cmetrics.ResultCache(
    cache_root, {'seed': config.seed, 'cost': config.cost, 'gap': config.gap}
  )
  return cache.get_or_compute('gap', lambda: _gap_study(config, cost))
