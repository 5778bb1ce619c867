"""Local search after packing + allocation: group splits and LPT rebalancing.

BFD packs by memory only, so a long sequence can share its bin with short
ones that lengthen the critical path, and the allocation can only change
degrees. Two moves fix that, each kept only when the exact re-allocation
lowers the makespan:

* ``refine_groups``: split the critical-path group (its longest sequence
  alone, or LPT halves by work).
* ``rebalance``: keep the degrees, re-assign every sequence by LPT to the
  group that finishes it earliest, re-solve the degrees.

``improve`` runs the first, then up to two passes of the second.
"""

from __future__ import annotations

import math

import numpy as np

from dhp import allocation
from dhp import plan_types as pt


def _part_min(problem: pt.RoundProblem, ids):
  """Fewest ranks for the sequences ``ids`` as one group (memory bound)."""
  lengths, m = problem.lengths, problem.min_deg
  need = max(
    int(m[ids].max()), -(-int(lengths[ids].sum()) // int(problem.capacity))
  )
  if problem.power_of_two:
    need = 1 << (need - 1).bit_length()
  return need


def _candidate_splits(ids, work):
  """Two ways to split a group: its longest sequence alone, and LPT halves."""
  order = ids[np.argsort(-work[ids], kind='stable')]
  yield order[:1], order[1:]
  halves: list[list[int]] = [[], []]
  loads = [0.0, 0.0]
  for i in order.tolist():
    h = 0 if loads[0] <= loads[1] else 1
    halves[h].append(i)
    loads[h] += work[i]
  if len(halves[0]) > 1 and halves[1]:
    yield np.array(halves[0]), np.array(halves[1])


def refine_groups(
  problem: pt.RoundProblem, sol: pt.Grouping, max_splits=None
) -> pt.Grouping:
  """Splits the critical-path group while that lowers the optimal makespan.

  Each step tries two splits of the critical group (its longest sequence
  alone; LPT halves by work), re-solves the allocation exactly and keeps
  the better split if it helps.

  Args:
    problem: the round.
    sol: the current grouping.
    max_splits: at most this many splits (default: B).

  Returns:
    The updated grouping (``sol`` itself when no split helps).
  """
  lengths, cost = problem.lengths, problem.cost
  bins, bin_min, table, degrees, makespan = sol
  work = cost.a1 * lengths.astype(np.float64) ** 2 + cost.a2 * lengths
  max_splits = len(lengths) if max_splits is None else max_splits
  for _ in range(max_splits):
    times = table[np.arange(len(degrees)), degrees]
    g = int(np.argmax(times))
    ids = np.nonzero(bins == g)[0]
    if len(ids) < 2:
      break
    best = None
    for keep, move in _candidate_splits(ids, work):
      new_min = np.append(bin_min, 0)
      new_min[g] = _part_min(problem, keep)
      new_min[-1] = _part_min(problem, move)
      if new_min.sum() > problem.num_devices:
        continue
      local = np.zeros(len(ids), np.int64)
      local[np.isin(ids, move)] = 1
      rows = cost.time_table(
        lengths[ids],
        local,
        2,
        problem.num_devices,
        problem.comm,
        problem.per[ids],
      )
      new_table = np.concatenate([table, rows[1:]])
      new_table[g] = rows[0]
      result = allocation.allocate_for(problem, new_table, new_min)
      if result is not None and result[1] < makespan * (1 - 1e-12):
        if best is None or result[1] < best.makespan:
          new_bins = bins.copy()
          new_bins[move] = len(bin_min)
          best = pt.Grouping(new_bins, new_min, new_table, *result)
    if best is None:
      break
    bins, bin_min, table, degrees, makespan = best
  return pt.Grouping(bins, bin_min, table, degrees, makespan)


def rebalance(problem: pt.RoundProblem, degrees) -> pt.Grouping | None:
  """Keeps the group degrees, re-assigns sequences by LPT, re-solves degrees.

  Sequences (longest work first) go to the group that would finish
  earliest among those with degree >= m_i and token room; BFD balances
  memory only, this balances time. The allocation is then solved again for
  the new groups.

  Args:
    problem: the round.
    degrees: [K] degrees of the current groups.

  Returns:
    The new grouping, or None if some sequence finds no group.
  """
  lengths, m, capacity = problem.lengths, problem.min_deg, problem.capacity
  k = len(degrees)
  per = problem.per[:, np.asarray(degrees) - 1]  # [B, K]
  loads = np.full(k, float(problem.cost.beta))
  room = np.asarray(degrees) * float(capacity)
  new_bins = np.empty(len(lengths), np.int64)
  order = np.argsort(-per.min(axis=1), kind='stable').tolist()
  if k <= 64:  # few groups: plain Python beats per-sequence NumPy calls
    deg, load, free = degrees.tolist(), loads.tolist(), room.tolist()
    rows, lens, mins = per.tolist(), lengths.tolist(), m.tolist()
    for i in order:
      best, best_t = -1, math.inf
      row = rows[i]
      for g in range(k):
        t = load[g] + row[g]
        if t < best_t and deg[g] >= mins[i] and free[g] >= lens[i]:
          best, best_t = g, t
      if best < 0:
        return None
      new_bins[i] = best
      load[best] = best_t
      free[best] -= lens[i]
  else:
    for i in order:
      finish = loads + per[i]
      ok = (degrees >= m[i]) & (room >= lengths[i])
      if not ok.any():
        return None
      g = int(np.argmin(np.where(ok, finish, np.inf)))
      new_bins[i] = g
      loads[g] = finish[g]
      room[g] -= lengths[i]
  used = np.unique(new_bins)
  new_bins = np.searchsorted(used, new_bins)
  num_bins = len(used)
  tokens = np.bincount(new_bins, lengths, minlength=num_bins)
  seq_min = np.zeros(num_bins, np.int64)
  np.maximum.at(seq_min, new_bins, m)
  bin_min = np.maximum(np.ceil(tokens / capacity).astype(np.int64), seq_min)
  bin_min = pt.round_up_pow2(bin_min, problem.power_of_two)
  table = problem.cost.time_table(
    lengths, new_bins, num_bins, problem.num_devices, problem.comm, problem.per
  )
  result = allocation.allocate_for(problem, table, bin_min)
  if result is None:
    return None
  return pt.Grouping(new_bins, bin_min, table, *result)


def improve(problem: pt.RoundProblem, sol: pt.Grouping) -> pt.Grouping:
  """``refine_groups``, then up to two ``rebalance`` passes that help."""
  sol = refine_groups(problem, sol)
  for _ in range(2):
    new = rebalance(problem, sol.degrees)
    if new is None or new.makespan >= sol.makespan * (1 - 1e-12):
      break
    sol = new
  return sol
