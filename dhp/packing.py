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
  lengths, m, capacity = problem.lengths, problem.min_deg, problem.capacity
  if pack_capacity == 0:
    bins = np.arange(len(lengths))
  else:
    m_pack = np.maximum(1, -(-lengths // int(pack_capacity)))
    bins, _ = bfd_pack(lengths, m_pack, pack_capacity)
  num_bins = int(bins.max()) + 1
  tokens = np.bincount(bins, lengths, minlength=num_bins)
  bin_min = np.maximum(
    np.ceil(tokens / capacity).astype(np.int64),
    np.maximum.reduceat(
      m[np.argsort(bins, kind='stable')],
      np.searchsorted(np.sort(bins), np.arange(num_bins)),
    ),
  )
  bin_min = pt.round_up_pow2(bin_min, problem.power_of_two)
  if bin_min.sum() > problem.num_devices:
    return None
  table = problem.cost.time_table(
    lengths, bins, num_bins, problem.num_devices, problem.comm, problem.per
  )
  result = allocation.allocate_for(problem, table, bin_min)
  if result is None:
    return None
  degrees, makespan = result
  return pt.Grouping(bins, bin_min, table, degrees, makespan)
