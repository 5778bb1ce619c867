"""DHP planner latency: vectorised NumPy DP vs the DP as Python loops.

The peer is the 2-D DP written as plain Python loops, the way the public
DHP-style scheduler writes ``dp_resource_allocation``, run on the same
atomic groups (BFD bins) and the same cost table as ``allocation.allocate_dp``
and ``allocation.allocate_threshold`` (all three give the same optimum,
asserted). Also prints whole-planner latencies (ms, median of repeats, on
this shared CPU) and the gap to the exact optimum on small instances, then
one summary line.

  python -m experiments.benchmarks.dhp_planner
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dhp import allocation
from dhp import baselines as bl
from dhp import cost_model as cm
from dhp import lengths as ln
from dhp import packing
from dhp import plan_types as pt
from dhp import planner as pl

CAPACITY = 16384


def python_dp(table, min_cp, n):
  """The 2-D DP in pure Python: D[k][j] = min_d max(D[k-1][j-d], T_k(d))."""
  k_groups = len(table)
  inf = float('inf')
  rows = table.tolist()
  best = [0.0] + [inf] * n
  choice = []
  for k in range(k_groups):
    new = [inf] * (n + 1)
    arg = [0] * (n + 1)
    t = rows[k]
    for j in range(n + 1):
      for d in range(int(min_cp[k]), j + 1):
        v = max(best[j - d], t[d])
        if v < new[j]:
          new[j], arg[j] = v, d
    best = new
    choice.append(arg)
  j = min(range(n + 1), key=lambda i: best[i])
  makespan = best[j]
  degrees = []
  for k in range(k_groups - 1, -1, -1):
    degrees.append(choice[k][j])
    j -= choice[k][j]
  return degrees[::-1], makespan


def _median_ms(fn, repeats, *args, **kwargs):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn(*args, **kwargs)
    times.append((time.perf_counter() - start) * 1e3)
  return float(np.median(times))


def round_tables(lengths, n, cost):
  """(table, bin_min) of every round's BFD bins (paper-mode rounds)."""
  plan = pl.plan_batch(
    lengths, n, CAPACITY, cost, refine=False, pack_scales=(1.0,)
  )
  out = []
  for r in plan.rounds:
    sub = lengths[np.concatenate([g.seq_ids for g in r.groups])]
    m = pt.min_degrees(sub, CAPACITY, n)
    bins, bin_min = packing.bfd_pack(sub, m, CAPACITY)
    out.append((cost.time_table(sub, bins, len(bin_min), n), bin_min))
  return out


def allocation_ms(solver, tables, n, repeats):
  """Median ms to allocate degrees for every round with ``solver``."""

  def run():
    return [solver(t, b, n)[1] for t, b in tables]

  return _median_ms(run, repeats)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument(
    '--quick',
    '--smoke',
    action='store_true',
    help='small sizes only (tests, run_all --smoke)',
  )
  args = parser.parse_args()
  cost = cm.flexsp_preset()
  sizes = (
    [(8, 64), (64, 512)]
    if args.quick
    else [(8, 64), (16, 128), (32, 256), (64, 512), (256, 512), (1024, 512)]
  )
  print(
    'devices batch | planner ms: dhp  paper_mode | allocation ms: '
    'python_dp  numpy_dp  threshold'
  )
  ratio = None
  for n, b in sizes:
    lengths = ln.long_tail(b, 0)
    ours = _median_ms(pl.plan_batch, args.repeats, lengths, n, CAPACITY, cost)
    paper = _median_ms(
      pl.plan_batch,
      args.repeats,
      lengths,
      n,
      CAPACITY,
      cost,
      refine=False,
      pack_scales=(1.0,),
    )
    tables = round_tables(lengths, n, cost)
    thr = allocation_ms(allocation.allocate_threshold, tables, n, args.repeats)
    if n <= 64:
      py = allocation_ms(python_dp, tables, n, max(1, args.repeats // 2))
      npdp = allocation_ms(allocation.allocate_dp, tables, n, args.repeats)
      for t, b_min in tables:  # same optimum
        assert (
          abs(
            python_dp(t, b_min, n)[1] - allocation.allocate_dp(t, b_min, n)[1]
          )
          <= 1e-9 * allocation.allocate_dp(t, b_min, n)[1]
        )
    else:
      py = npdp = float('nan')
    print(
      f'{n:7d} {b:5d} | {ours:16.2f} {paper:11.2f} | {py:20.2f} '
      f'{npdp:9.2f} {thr:10.2f}'
    )
    if (n, b) == (64, 512):
      ratio = py / npdp
  rng = np.random.default_rng(0)
  gaps = []
  for trial in range(20 if args.quick else 100):
    n = int(rng.integers(2, 9))
    lengths = ln.long_tail(int(rng.integers(2, 8)), trial, max_len=CAPACITY * n)
    exact = bl.exact_round(lengths, n, CAPACITY, cost)
    ours = pl.plan_round(lengths, n, CAPACITY, cost)
    if exact is not None and ours is not None:
      gaps.append(ours.estimated_ms / exact.estimated_ms - 1)
  gaps = np.array(gaps)
  print(
    f'gap to exact optimum over {len(gaps)} rounds: mean '
    f'{gaps.mean():.2%}, max {gaps.max():.2%}, within 5%: '
    f'{(gaps <= 0.05).mean():.0%}'
  )
  print(
    '(timings on a shared, loaded 2-core CPU; the paper reports <= 86 ms '
    'for its solver at 64 NPUs, GBS 512)'
  )
  print(
    f'dhp_planner: python_dp_ms/numpy_dp_ms={ratio:.1f}x (the 2-D DP as '
    'Python loops vs vectorised NumPy, same BFD bins, 64 devices, batch 512)'
  )


if __name__ == '__main__':
  main()
