"""Stage 1: simulated DHP vs the baselines, on the cost model.

* ``simulate``: per (distribution, cluster size) unit, the simulated total
  time of DHP and every baseline over ``num_batches`` seeded batches.
* ``sweep``: DHP over the best static ring CP as the cost model's penalty
  terms vary (one unit per cost model and cluster size).
* ``utilisation``: per-rank busy fraction of DHP's and static CP's first
  round.

Unit results are cached with ``common.metrics.ResultCache`` keyed by the
config fields they depend on, so a rerun of the same config skips them and a
changed config recomputes.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from common import metrics as cmetrics
from dhp import baselines as bl
from dhp import cost_model as cm
from dhp import lengths as ln
from dhp import planner as pl

BASELINES = (
  'static_ring',
  'ulysses',
  'megatron_balanced',
  'flexsp_pow2',
  'dhp_paper_mode',
)
METHODS = ('dhp',) + BASELINES
# Columns of a simulation row before the speedups (``BASELINES`` order).
SPEEDUP_COLUMN = 4


def compare(lengths, n, capacity, cost, num_heads):
  """Simulated plans of DHP and every baseline on one batch (None: cannot
  run it)."""
  out = {'dhp': pl.plan_batch(lengths, n, capacity, cost)}
  _, out['static_ring'], _ = bl.best_static(lengths, n, capacity, cost)
  try:
    _, out['ulysses'], _ = bl.best_static(
      lengths, n, capacity, cost, cm.ULYSSES, num_heads
    )
  except ValueError:  # no degree dividing the heads fits the batch
    out['ulysses'] = None
  out['megatron_balanced'] = pl.plan_batch(
    lengths, n, capacity, cost, bl.megatron_balanced_round
  )
  out['flexsp_pow2'] = pl.plan_batch(
    lengths, n, capacity, cost, bl.flexsp_round
  )
  out['dhp_paper_mode'] = pl.plan_batch(
    lengths, n, capacity, cost, refine=False, pack_scales=(1.0,)
  )
  return out


def _simulate_unit(config, cost, dist, n):
  """Totals (ms per batch, None where a method cannot run it) of one cell."""
  sim = config.simulation
  totals = {k: [] for k in METHODS}
  util = []
  tokens = 0
  for b in range(sim.num_batches):
    lengths = ln.sample(dist, sim.batch_size, config.seed + b)
    tokens += int(lengths.sum())
    res = compare(lengths, n, sim.capacity, cost, sim.num_heads)
    for k, plan in res.items():
      totals[k].append(None if plan is None else plan.total_ms)
    util.append(res['dhp'].utilisation)
  return {'totals': totals, 'tokens': tokens, 'utilisation': util}


def simulate(config, cost, cache_root):
  """Speedups of DHP over each baseline across distributions and sizes.

  Returns:
    (rows, curves): rows [distribution, devices, DHP s/batch, DHP
    tok/s/dev, speedup per baseline (None: cannot run), DHP utilisation];
    curves {baseline: {distribution: {'x': log2(devices), 'y': speedup}}}.
  """
  sim = config.simulation
  cache = cmetrics.ResultCache(
    cache_root,
    {
      'seed': config.seed,
      'cost': config.cost,
      'batch_size': sim.batch_size,
      'num_batches': sim.num_batches,
      'capacity': sim.capacity,
      'num_heads': sim.num_heads,
    },
  )
  rows, curves = [], {}
  for dist in sim.distributions:
    for n in sim.cluster_sizes:
      unit = cache.get_or_compute(
        f'sim_{dist}_N{n}',
        lambda d=dist, n=n: _simulate_unit(config, cost, d, n),
      )
      totals = unit['totals']
      dhp_ms = float(np.sum(totals['dhp']))
      speed = {
        k: None
        if any(t is None for t in totals[k])
        else round(float(np.sum(totals[k]) / dhp_ms), 3)
        for k in BASELINES
      }
      tput = unit['tokens'] / (dhp_ms / 1e3) / n
      rows.append(
        [dist, n, round(dhp_ms / 1e3, 2), round(tput, 1)]
        + [speed[k] for k in BASELINES]
        + [round(float(np.mean(unit['utilisation'])), 3)]
      )
      for k in BASELINES:
        if speed[k] is None:
          continue
        series = curves.setdefault(k, {}).setdefault(dist, {'x': [], 'y': []})
        series['x'].append(math.log2(n))
        series['y'].append(speed[k])
  return rows, curves


def _sweep_models(config, cost):
  """(unit name, label, cost model) for every point of the sweep grid."""
  sw = config.sweep
  grid = [('linear', 'linear (no penalties)', cm.linear_preset())]
  for eff in sw.eff_half:
    for bw in sw.inter_node_gbps:
      for alpha in sw.ring_step_ms:
        grid.append(
          (
            f'eff_half={eff:g}_inter={bw:g}_alpha={alpha:g}',
            f'eff_half={eff:g} inter={bw:g}GB/s alpha={alpha:g}',
            dataclasses.replace(
              cost, eff_half=eff, inter_node_gbps=bw, ring_step_ms=alpha
            ),
          )
        )
  return grid


def sweep(config, cost, cache_root):
  """DHP speedup over the best static ring CP as penalty terms vary.

  Returns:
    rows [cost model, devices, speedup].
  """
  sw, sim = config.sweep, config.simulation
  cache = cmetrics.ResultCache(
    cache_root,
    {
      'seed': config.seed,
      'cost': config.cost,
      'distribution': sw.distribution,
      'batch_size': sim.batch_size,
      'num_batches': sim.num_batches,
      'capacity': sim.capacity,
    },
  )
  lengths = [
    ln.sample(sw.distribution, sim.batch_size, config.seed + b)
    for b in range(sim.num_batches)
  ]

  def unit(model, n):
    dhp = sum(
      pl.plan_batch(x, n, sim.capacity, model).total_ms for x in lengths
    )
    static = sum(
      bl.best_static(x, n, sim.capacity, model)[1].total_ms for x in lengths
    )
    return {'dhp_ms': dhp, 'static_ms': static}

  rows = []
  for name, label, model in _sweep_models(config, cost):
    for n in sw.cluster_sizes:
      res = cache.get_or_compute(
        f'sweep_{name}_N{n}', lambda m=model, n=n: unit(m, n)
      )
      rows.append([label, n, round(res['static_ms'] / res['dhp_ms'], 3)])
  return rows


def _rank_busy(plan):
  """Per rank: T_g / makespan of the group holding it (0 for idle ranks)."""
  busy = [0.0] * plan.num_devices
  for g in plan.groups:
    for r in range(g.offset, g.offset + g.degree):
      busy[r] = g.time_ms / plan.makespan_ms
  return busy


def utilisation(config, cost):
  """DHP's and the best static CP's first round at ``utilisation_devices``.

  Returns:
    (curve, U of DHP's round 1, U of static CP's round 1); the curve's
    series are the per-rank busy fractions T_g / makespan.
  """
  sim = config.simulation
  n = sim.utilisation_devices
  lengths = ln.sample(sim.utilisation_distribution, sim.batch_size, config.seed)
  dhp = pl.plan_batch(lengths, n, sim.capacity, cost).rounds[0]
  degree, static, _ = bl.best_static(lengths, n, sim.capacity, cost)
  st = static.rounds[0]
  ranks = list(range(n))
  curve = {
    'title': f'Per-rank utilisation of round 1 ({n} devices, '
    f'{sim.utilisation_distribution})',
    'xlabel': 'rank',
    'ylabel': 'group time / makespan',
    'series': {
      f'DHP (U={dhp.utilisation:.2f}, {len(dhp.groups)} groups)': {
        'x': ranks,
        'y': _rank_busy(dhp),
      },
      f'static CP={degree} (U={st.utilisation:.2f}, {len(st.groups)} groups)': {
        'x': ranks,
        'y': _rank_busy(st),
      },
    },
  }
  return curve, dhp.utilisation, st.utilisation
