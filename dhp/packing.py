"""Packing sequences into atomic groups: BFD and multi-scale packing.

* ``bfd_pack``: Best-Fit Decreasing into bins of capacity min_cp * C, so
  short sequences fill the room long ones leave (the paper's step 2).
* ``solve_packing``: BFD at one bin scale (s * C tokens per rank, or every
  sequence alone), then the exact degree allocation of those bins. The
  planner runs it for several scales and keeps the best.
"""

from __future__ import annotations

import bisect

import numpy as np

from dhp import allocation
from dhp import plan_types as pt


def bfd_pack(lengths, min_deg, capacity):
  """Best-Fit Decreasing into bins of capacity min_cp * C.

  Args:
    lengths: [B] tokens.
    min_deg: [B] minimum degree of each sequence (non-decreasing in length).
    capacity: tokens per rank.

  Returns:
    (bins [B] int64 bin id per sequence, bin_min_cp [K] int64).
  """
  lengths = np.asarray(lengths)
  order = np.argsort(-lengths, kind='stable')
  bins = np.empty(len(lengths), np.int64)
  bin_min_cp: list[int] = []
  rooms: list[tuple[int, int]] = []  # (room left, bin id), sorted
  last_m = None
  for i in order.tolist():
    length, m = int(lengths[i]), int(min_deg[i])
    if last_m is not None and m > last_m:
      raise ValueError('min_deg must not decrease as lengths decrease.')
    last_m = m
    # Every open bin has min_cp >= m (opened by a longer sequence), so the
    # best fit is the smallest room that still holds the sequence.
    pos = bisect.bisect_left(rooms, (length, -1))
    if pos < len(rooms):
      room, b = rooms.pop(pos)
      bisect.insort(rooms, (room - length, b))
    else:
      b = len(bin_min_cp)
      bin_min_cp.append(m)
      bisect.insort(rooms, (m * int(capacity) - length, b))
    bins[i] = b
  return bins, np.array(bin_min_cp, np.int64)


def group_tables(problem: pt.RoundProblem, bins, num_bins):
  """Times, token counts and minimum degrees of the groups ``bins`` define.

  Args:
    problem: the round.
    bins: int [B] group of each sequence, every group in [0, K) non-empty.
    num_bins: K.

  Returns:
    (table float64 [K, W + 1] T_k(d) with column 0 +inf, tokens int64 [K],
    bin_min int64 [K] = max(max m_i, ceil(tokens / C)), 2^k if asked).
  """
  bins = np.asarray(bins, np.int64)
  order = np.argsort(bins, kind='stable')
  starts = np.searchsorted(bins[order], np.arange(num_bins))
  if np.any(np.diff(np.append(starts, len(bins))) == 0):
    raise ValueError('group_tables: every group must hold >= 1 sequence.')
  table = np.add.reduceat(problem.per[order], starts, axis=0)
  table[:, 1:] += problem.cost.beta
  tokens = np.add.reduceat(problem.lengths[order], starts)
  bin_min = np.maximum(
    -(-tokens // int(problem.capacity)),
    np.maximum.reduceat(problem.min_deg[order], starts),
  )
  return table, tokens, pt.round_up_pow2(bin_min, problem.power_of_two)


def grouping_from_bins(problem: pt.RoundProblem, bins) -> pt.Grouping | None:
  """The exact degree allocation of the groups ``bins`` define.

  Group ids are renumbered 0..K-1 in order of first use.

  Returns:
    The allocated grouping, or None when no allocation fits N ranks.
  """
  bins = np.asarray(bins, np.int64)
  _, first, inverse = np.unique(bins, return_index=True, return_inverse=True)
  rank = np.empty(len(first), np.int64)
  rank[np.argsort(first, kind='stable')] = np.arange(len(first))
  bins = rank[inverse.reshape(-1)]
  num_bins = len(first)
  if num_bins > problem.num_devices:  # every group needs >= 1 rank
    return None
  table, _, bin_min = group_tables(problem, bins, num_bins)
  if bin_min.sum() > problem.num_devices or bin_min.max() > problem.width:
    return None
  result = allocation.allocate_for(problem, table, bin_min)
  if result is None:
    return None
  degrees, makespan = result
  return pt.Grouping(bins, bin_min, table, degrees, makespan)


def solve_packing(
  problem: pt.RoundProblem, pack_capacity: int
) -> pt.Grouping | None:
  """BFD at ``pack_capacity`` tokens per rank, then the exact allocation.

  Args:
    problem: the round.
    pack_capacity: bin capacity per rank used for packing only (0: every
      sequence is its own group). The groups' minimum degrees still come
      from the real capacity ``problem.capacity``.

  Returns:
    The allocated grouping, or None when the groups need more than N ranks.
  """
  lengths = problem.lengths
  if pack_capacity == 0:
    bins = np.arange(len(lengths))
  else:
    m_pack = np.maximum(1, -(-lengths // int(pack_capacity)))
    bins, _ = bfd_pack(lengths, m_pack, pack_capacity)
  return grouping_from_bins(problem, bins)


def threshold_pack(problem: pt.RoundProblem, target) -> np.ndarray | None:
  """Groups that finish by ``target`` ms on the fewest ranks (greedy).

  Sequences in decreasing length. Each one joins the fullest group that
  still finishes by ``target`` at its current degree with memory room
  (no extra rank), else it opens a new group on the fewest ranks that
  meet ``target``, or grows an existing group's degree when that costs fewer
  ranks than a new group. Each step is a few vectorised operations over
  the K open groups, so a pass costs O(B K) element operations in O(B)
  NumPy calls, plus an O(K W) row update per group opened or grown. The
  planner tries it at the round's lower bound: when the ranks suffice the
  plan is optimal.

  Args:
    problem: the round.
    target: makespan to meet (ms).

  Returns:
    bins [B] int64, or None when the groups need more than N ranks or a
    sequence cannot meet ``target`` on any degree of the table.
  """
  per, lengths, n = problem.per, problem.lengths, problem.num_devices
  beta, capacity = float(problem.cost.beta), int(problem.capacity)
  b, cols = per.shape
  usable = problem.usable(cols)
  usable_l = usable.tolist()
  d_all = np.arange(cols)
  order = np.argsort(-lengths, kind='stable').tolist()
  rows = np.empty((b, cols))  # group time rows (with beta)
  degs = np.zeros(b, np.int64)
  loads = np.zeros(b)
  room = np.zeros(b, np.int64)  # tokens still free at the current degree
  bins = np.empty(b, np.int64)
  used, k_open = 0, 0
  lens, mins = lengths.tolist(), problem.min_deg.tolist()
  per_l = per.tolist()
  for i in order:
    li, mi = lens[i], mins[i]
    if k_open:
      d_k = degs[:k_open]
      t = loads[:k_open] + per[i, d_k]
      ok = (t <= target) & (room[:k_open] >= li) & (d_k >= mi)
      if ok.any():
        k = int(np.argmax(np.where(ok, t, -np.inf)))
        rows[k] += per[i]
        loads[k] = t[k]
        room[k] -= li
        bins[i] = k
        continue
    row_l = per_l[i]
    if usable_l[mi] and row_l[mi] + beta <= target and li <= mi * capacity:
      alone = mi
    else:
      ok = usable & (d_all >= max(mi, -(-li // capacity)))
      hit = np.flatnonzero(ok & (per[i] + beta <= target))
      alone = int(hit[0]) if hit.size else -1
    grow_k, grow_d = -1, -1
    if k_open and (alone < 0 or alone > 1):
      cand = rows[:k_open] + per[i]
      tok = degs[:k_open] * capacity - room[:k_open] + li
      floor = np.maximum(-(-tok // capacity), mi)
      ok = usable[None] & (d_all[None] >= floor[:, None]) & (cand <= target)
      has = ok.any(axis=1)
      if has.any():
        first = np.where(has, ok.argmax(axis=1), cols)
        extra = np.where(has, first - degs[:k_open], n + 1)
        k = int(np.argmin(extra))
        if alone < 0 or extra[k] < alone:
          grow_k, grow_d = k, int(first[k])
    if grow_k >= 0:
      k = grow_k
      used += grow_d - int(degs[k])
      rows[k] += per[i]
      room[k] += (grow_d - int(degs[k])) * capacity - li
      degs[k] = grow_d
      loads[k] = rows[k, grow_d]
    elif alone >= 0:
      k = k_open
      k_open += 1
      rows[k] = per[i] + beta
      degs[k] = alone
      loads[k] = rows[k, alone]
      room[k] = alone * capacity - li
      used += alone
    else:
      return None
    bins[i] = k
    if used > n:
      return None
  return bins
