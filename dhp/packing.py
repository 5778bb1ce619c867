"""Packing sequences into atomic groups: BFD and multi-scale packing.

* ``bfd_pack``: Best-Fit Decreasing into bins of capacity min_cp * C, so
  short sequences fill the room long ones leave (the paper's step 2).
* ``solve_packing``: BFD at one bin scale (s * C tokens per rank, or every
  sequence alone), then the exact degree allocation of those bins. The
  planner runs it for several scales and keeps the best.
"""

from __future__ import annotations

import numpy as np

from dhp import allocation
from dhp import kernels
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
  lengths = np.asarray(lengths, np.int64)
  min_deg = np.asarray(min_deg, np.int64)
  order = np.argsort(-lengths, kind='stable')
  if np.any(np.diff(min_deg[order]) > 0):
    raise ValueError('min_deg must not decrease as lengths decrease.')
  # Every open bin has min_cp >= m (opened by a longer sequence), so the
  # best fit is the smallest room that still holds the sequence.
  return kernels.bfd(lengths, min_deg, order, int(capacity))


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
  ranks than a new group. A pass costs O(B K) for the joins plus O(K W)
  per group opened or grown (compiled: ``kernels.threshold``). The
  planner tries it at the round's lower bound: when the ranks suffice the
  plan is optimal.

  Args:
    problem: the round.
    target: makespan to meet (ms).

  Returns:
    bins [B] int64, or None when the groups need more than N ranks or a
    sequence cannot meet ``target`` on any degree of the table.
  """
  ok, bins = kernels.threshold(
    problem.per,
    problem.lengths,
    problem.min_deg,
    np.argsort(-problem.lengths, kind='stable'),
    problem.usable(problem.per.shape[1]),
    float(target),
    float(problem.cost.beta),
    int(problem.capacity),
    int(problem.num_devices),
  )
  return bins if ok else None
