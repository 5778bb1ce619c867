"""The DHP planner: ``plan_round`` for one micro-batch, ``plan_batch`` for a
global batch.

For one micro-batch (a "round") of sequences on N ranks with a per-rank
token capacity C (``plan_round``):

1. ``plan_types.min_degrees``: m_i = ceil(L_i / C), the fewest ranks that
   hold L_i.
2. ``packing``: Best-Fit Decreasing packs sequences into atomic groups of
   capacity min_cp * C (at several bin scales), each followed by the exact
   degree allocation (``allocation.allocate``: the paper's 2-D DP or the
   equivalent threshold solver).
3. ``local_search.improve``: critical-group splits and LPT rebalancing,
   kept when the exact re-allocation lowers the makespan.
4. ``allocation.assign_leftover``: spare ranks go to the critical-path
   group while that shortens it.
5. ``placement.finalize_round``: contiguous rank ranges, largest group
   first, small groups best-fit into nodes so that they do not straddle a
   node boundary.

``plan_batch`` splits a global batch into work-balanced rounds (LPT) and
plans each with any round planner (DHP's ``plan_round`` or a baseline).
"""

from __future__ import annotations

import dataclasses
import heapq
import math

import numpy as np

from dhp import allocation
from dhp import cost_model as cm
from dhp import exhaustive
from dhp import kernels
from dhp import local_search
from dhp import packing
from dhp import placement
from dhp import plan_types as pt

SMALL_ROUND = local_search.SMALL_ROUND  # 'small' rounds (see plan_round)
LARGE_REFINE = 1  # larger rounds refine their best this many candidates
SMALL_REFINE = 4  # small rounds refine their best this many candidates
# Memory-tight small rounds (sum L >= 0.8 N C, <= 10 sequences) add the
# exhaustive optimum (dhp.exhaustive, <= 3^10 / 2 subset pairs) as a
# candidate: there the groups are a bin-packing problem local moves miss.
EXACT_MAX_SEQUENCES = 10
EXACT_UTILISATION = 0.8


def _lpt_bins(problem: pt.RoundProblem, times, groups, degree):
  """LPT of every sequence into ``groups`` groups of ``degree`` ranks.

  Args:
    times: float64 [B] each sequence's time at ``degree``.

  Returns:
    bins [B] int64, or None when a sequence does not fit (memory).
  """
  lengths = problem.lengths
  if problem.min_deg.max() > degree:
    return None
  room = degree * int(problem.capacity)
  loads = [0.0] * groups
  tokens = [0] * groups
  bins = np.empty(len(lengths), np.int64)
  heap = [(0.0, g) for g in range(groups)]
  lens, ts = lengths.tolist(), times.tolist()
  for i in np.argsort(-times, kind='stable').tolist():
    # Least-loaded group with token room (the heap top almost always fits).
    skipped = []
    while heap:
      load, g = heapq.heappop(heap)
      if tokens[g] + lens[i] <= room:
        break
      skipped.append((load, g))
    else:
      return None
    bins[i] = g
    loads[g] = load + ts[i]
    tokens[g] += lens[i]
    heapq.heappush(heap, (loads[g], g))
    for item in skipped:
      heapq.heappush(heap, item)
  return bins


def static_candidates(problem: pt.RoundProblem, incumbent=math.inf):
  """Static plans: every allowed uniform degree c, floor(N / c) groups, LPT.

  Degrees whose groups cannot be placed without a group smaller than a
  node straddling one are skipped. A degree is evaluated only if its lower
  bound max(t_longest(c), sum_i
  compute_i(c) / floor(N / c)) + beta is below the best makespan so far, in
  order of that bound (so the search stays O(N) when DHP's plan is near
  the single-sequence bound).

  Returns:
    list of (makespan, bins [B], degree c) for the static plans evaluated.
  """
  n, cost = problem.num_devices, problem.cost
  c = np.arange(1, n + 1)
  c = c[c >= problem.min_deg.max()]
  if problem.allowed is not None:
    c = c[np.asarray(problem.allowed, bool)[c]]
  if c.size == 0:
    return []
  longest = float(problem.lengths.max())
  bound = np.maximum(
    cost.sequence_times(longest, c, problem.comm),
    cost.compute_sum(problem.lengths, c) / (n // c),
  )
  bound = bound + cost.beta
  out = []
  best = incumbent
  for j in np.argsort(bound, kind='stable').tolist():
    if bound[j] >= best * (1 - 1e-12):
      break
    degree = int(c[j])
    if not placement.fits_nodes(
      [degree] * (n // degree), n, cost.devices_per_node
    ):
      continue  # some group would straddle a node: not the modelled time
    if degree <= problem.width:
      times = problem.per[:, degree]
    else:
      times = cost.sequence_times(problem.lengths, degree, problem.comm)
    bins = _lpt_bins(problem, times, n // degree, degree)
    if bins is None:
      continue
    makespan = float(
      np.bincount(bins, times, minlength=n // degree).max() + cost.beta
    )
    out.append((makespan, bins, degree))
    best = min(best, makespan)
  return out


def token_balanced(problem: pt.RoundProblem, max_counts=4):
  """Memory-frugal groupings: LPT by tokens into k groups.

  Under tight memory a group's rank minimum ceil(tokens / C) dominates and
  groups of balanced tokens waste the least of it. k runs over 2..min(B, N)
  (at most ``max_counts`` values, log-spaced; 2 in rounds of more than
  ``SMALL_ROUND`` sequences), and only when the round fills more than half
  of the N C tokens.

  Returns:
    list of bins [B].
  """
  lengths, n = problem.lengths, problem.num_devices
  if lengths.sum() <= 0.5 * n * problem.capacity:
    return []
  if len(lengths) > SMALL_ROUND:
    max_counts = 2
  top = min(len(lengths), n)
  counts = np.unique(
    np.geomspace(2, max(top, 2), max_counts).round().astype(int)
  )
  counts = counts[(counts >= 2) & (counts <= top)]
  out = []
  order = np.argsort(-lengths, kind='stable').tolist()
  lens = lengths.tolist()
  for k in counts.tolist():
    heap = [(0, g) for g in range(k)]
    bins = np.empty(len(lengths), np.int64)
    for i in order:
      load, g = heapq.heappop(heap)
      bins[i] = g
      heapq.heappush(heap, (load + lens[i], g))
    out.append(bins)
  return out


def _dedupe_key(bins):
  """The partition ``bins`` defines, independent of group labels."""
  _, first, inverse = np.unique(bins, return_index=True, return_inverse=True)
  rank = np.empty(len(first), np.int64)
  rank[np.argsort(first, kind='stable')] = np.arange(len(first))
  return rank[inverse.reshape(-1)].tobytes()


def plan_round(
  lengths,
  num_devices,
  capacity,
  cost: cm.CostModel,
  power_of_two=False,
  method='auto',
  comm=cm.RING,
  refine=True,
  pack_scales=(0.0, 0.5, 1.0, 2.0),
) -> pt.RoundPlan | None:
  """DHP for one micro-batch: candidates, local search, leftover, placement.

  Candidates (each allocated exactly):

  * BFD packings at bin scales ``pack_scales`` (``packing.solve_packing``);
  * the static plans: every allowed uniform degree c, floor(N / c) groups by
    LPT (``static_candidates``, pruned by a lower bound);
  * the one-group plan: every sequence in one group (its best degree, or
    N ranks), which exists iff sum L <= N C, so the planner finds a plan
    whenever one exists; when sum L > N C no plan exists (the groups'
    memory d_k C sums to at most N C).

  * in memory-tight rounds of at most ``EXACT_MAX_SEQUENCES`` sequences
    (sum L >= ``EXACT_UTILISATION`` N C), the exhaustive optimum.

  With ``refine``, distinct candidates are improved by
  ``local_search.improve`` (move, merge, split and swap moves; LPT passes):
  in rounds of at most ``SMALL_ROUND`` sequences every BFD packing and the
  best ``SMALL_REFINE`` other candidates, in larger rounds the best
  ``LARGE_REFINE``. The plan with the lowest makespan is kept, so it is
  never worse than any candidate (refined or not). Work per round: at most
  ``len(pack_scales) + 5 + N`` candidates (static degrees only while their
  bound beats the incumbent), at most ``len(pack_scales) + SMALL_REFINE``
  refinements each within ``local_search``'s bound, and one exhaustive
  search of O(3^10) in memory-tight rounds of <= 10 sequences.

  Args:
    lengths: [B] tokens of this round's sequences.
    num_devices: N ranks in the CP domain.
    capacity: tokens per rank.
    cost: the cost model.
    power_of_two: restrict degrees to powers of two (FlexSP-style baseline).
    method: allocation solver, see ``allocation.allocate``.
    comm: 'ring' (DHP) or 'ulysses'.
    refine: local search and the static / one-group candidates. False with
      ``pack_scales=(1.0,)`` is the paper's BFD + DP alone.
    pack_scales: BFD is run with bins of s * C tokens per rank for each s.
      s = 1 is the paper's memory-tight packing; s < 1 makes lighter atomic
      groups (s = 0: every sequence alone) and s > 1 heavier ones.

  Returns:
    RoundPlan with seq_ids indexing ``lengths``, or None when no plan
    exists (sum L > N C; with ``refine=False`` also when the BFD groups
    need more than N ranks).
  """
  lengths = pt.check_inputs(lengths, num_devices, capacity)
  if not pack_scales or any(not 0 <= f < math.inf for f in pack_scales):
    raise ValueError(f'pack_scales={pack_scales!r}: need finite values >= 0.')
  problem = pt.RoundProblem.build(
    lengths, num_devices, capacity, cost, power_of_two, method, comm
  )
  tight = problem.lower_bound() * (1 + 1e-12)
  groupings = []
  # With ``refine``, first the groups that meet the lower bound on the
  # fewest ranks (``threshold_pack``, one compiled pass), then the BFD
  # packings; the first plan at the lower bound is optimal and ends the
  # search.
  steps = (['threshold'] if refine else []) + list(pack_scales)
  for f in steps:
    if f == 'threshold':
      bins = packing.threshold_pack(problem, tight)
      sol = None if bins is None else packing.grouping_from_bins(problem, bins)
    else:
      sol = packing.solve_packing(
        problem, 0 if f == 0 else max(1, int(f * capacity))
      )
    if sol is not None:
      groupings.append(sol)
      if sol.makespan <= tight:
        break
  fixed = []  # (makespan, bins, degrees): plans outside the table's width
  if refine and min((g.makespan for g in groupings), default=math.inf) > tight:
    others = []
    one = packing.grouping_from_bins(problem, np.zeros(len(lengths), np.int64))
    if one is not None:
      others.append(one)
    else:
      fixed.extend(_one_group_plans(problem))
    for bins in token_balanced(problem):
      sol = packing.grouping_from_bins(problem, bins)
      if sol is not None:
        others.append(sol)
    incumbent = min((g.makespan for g in groupings + others), default=math.inf)
    for makespan, bins, degree in static_candidates(problem, incumbent):
      sol = packing.grouping_from_bins(problem, bins)
      if sol is not None:
        others.append(sol)
      else:
        k = int(bins.max()) + 1
        fixed.append((makespan, bins, np.full(k, degree, np.int64)))
    groupings = groupings + others
    # Small rounds refine every BFD packing and the best SMALL_REFINE other
    # candidates; large rounds the best LARGE_REFINE candidates.
    small = len(lengths) <= SMALL_ROUND
    num_packings = len(groupings) - len(others)
    order = sorted(range(len(groupings)), key=lambda j: groupings[j].makespan)
    seen, refined, extra = set(), [], 0
    for j in order:
      sol = groupings[j]
      key = _dedupe_key(sol.bins)
      if key in seen:
        continue
      seen.add(key)
      if small and j < num_packings:
        pass  # a BFD packing: always refined
      elif extra < (SMALL_REFINE if small else LARGE_REFINE):
        extra += 1
      else:
        refined.append(sol)
        continue
      sol = local_search.improve(problem, sol)
      refined.append(sol)
      if sol.makespan <= tight:
        break
    groupings = refined
    if (
      len(lengths) <= EXACT_MAX_SEQUENCES
      and lengths.sum() >= EXACT_UTILISATION * num_devices * capacity
      and min((g.makespan for g in groupings), default=math.inf) > tight
    ):
      exact = exhaustive.exhaustive_round(
        lengths, num_devices, capacity, cost, problem.allowed, comm
      )
      if exact.feasible:
        bins = np.empty(len(lengths), np.int64)
        for k, ids in enumerate(exact.groups):
          bins[ids] = k
        sol = packing.grouping_from_bins(problem, bins)
        if sol is not None:
          groupings.append(sol)
  best = min(groupings, key=lambda g: g.makespan, default=None)
  best_fixed = min(fixed, key=lambda x: x[0], default=None)
  if best_fixed is not None and (best is None or best_fixed[0] < best.makespan):
    makespan, bins, degrees = best_fixed
    groups = _groups_of(bins)
    return placement.finalize_round(
      lengths,
      groups,
      degrees,
      cost,
      num_devices=num_devices,
      comm=comm,
      estimated_ms=makespan,
    )
  if best is None:
    return None
  degrees = allocation.assign_leftover(
    best.table,
    best.degrees,
    num_devices,
    problem.allowed,
    cost.devices_per_node,
  )
  estimated = float(best.table[np.arange(len(degrees)), degrees].max())
  if estimated > best.makespan * (1 + 1e-12):
    raise RuntimeError(
      f'assign_leftover raised the makespan from {best.makespan} to '
      f'{estimated}; it may only lower it.'
    )
  return placement.finalize_round(
    lengths,
    _groups_of(best.bins),
    degrees,
    cost,
    num_devices=num_devices,
    comm=comm,
    estimated_ms=estimated,
  )


def _groups_of(bins):
  """K index arrays, one per group id 0..K-1."""
  order = np.argsort(bins, kind='stable')
  return np.split(order, np.cumsum(np.bincount(bins))[:-1])


def _one_group_plans(problem: pt.RoundProblem):
  """Every sequence in one group on N ranks (or the largest allowed degree),
  when its memory minimum exceeds the table's width.

  Returns:
    [(makespan, bins, degrees)] or [] when it does not fit.
  """
  n = problem.num_devices
  d = n
  if problem.allowed is not None:
    d = int(np.nonzero(np.asarray(problem.allowed, bool))[0].max())
  if problem.lengths.sum() > d * problem.capacity:
    return []
  t = problem.cost.group_time(problem.lengths, d, problem.comm)
  bins = np.zeros(len(problem.lengths), np.int64)
  return [(t, bins, np.array([d], np.int64))]


def split_rounds(lengths, num_rounds, cost: cm.CostModel):
  """LPT split of a batch into rounds balanced by work a1 L^2 + a2 L.

  Returns:
    list of ``num_rounds`` sorted int64 index arrays (some may be empty).
  """
  lengths = np.asarray(lengths, np.float64)
  work = cost.a1 * lengths**2 + cost.a2 * lengths
  order = np.argsort(-work, kind='stable')
  which = kernels.lpt_rounds(work, order, int(num_rounds))
  by_round = np.argsort(which, kind='stable')  # ascending ids per round
  counts = np.bincount(which, minlength=num_rounds)
  return np.split(by_round, np.cumsum(counts)[:-1])


def _plan_rounds(
  lengths, num_rounds, num_devices, capacity, cost, planner, kwargs
):
  """The batch split into ``num_rounds`` LPT rounds, each planned; None if
  some round has no plan."""
  rounds = []
  for idx in split_rounds(lengths, num_rounds, cost):
    if idx.size == 0:
      continue
    plan = planner(lengths[idx], num_devices, capacity, cost, **kwargs)
    if plan is None:
      return None
    groups = tuple(
      pt.GroupPlan(idx[g.seq_ids], g.degree, g.offset, g.time_ms)
      for g in plan.groups
    )
    rounds.append(dataclasses.replace(plan, groups=groups))
  return pt.BatchPlan(tuple(rounds))


def _bound(lengths, num_rounds, problem_args):
  """Sum over the LPT rounds of each round's longest sequence alone on its
  best degree: no plan of that split is faster."""
  num_devices, capacity, cost = problem_args
  longest = np.array(
    [
      lengths[idx].max()
      for idx in split_rounds(lengths, num_rounds, cost)
      if idx.size
    ],
    np.float64,
  )  # [R]
  m = np.maximum(1, -(-longest // int(capacity)))
  d = np.arange(1, num_devices + 1)
  t = cost.sequence_times(longest[:, None], d[None, :])  # [R, N]
  t = np.where(d[None, :] >= m[:, None], t, np.inf)
  return float(t.min(axis=1).sum() + cost.beta * len(longest))


def plan_batch(
  lengths,
  num_devices,
  capacity,
  cost: cm.CostModel,
  round_planner: pt.RoundPlanner = plan_round,
  max_extra_rounds=4,
  **planner_kwargs,
) -> pt.BatchPlan:
  """Plans a global batch as LPT rounds; the round count is searched.

  Starts from R = ceil(sum L / (N C)) rounds and adds rounds while some
  round's planner returns None (R grows by max(1, R // 16)); from the first
  R at which every round has a plan, it tries R + 1, ..., R +
  ``max_extra_rounds`` while the total time drops and the rounds' lower
  bounds (each round's longest sequence alone on its best degree) still
  sum below the best total (memory-tight rounds can be slower than one
  more, looser round), and keeps the fastest. Every method uses this
  splitter.

  Returns:
    BatchPlan whose seq_ids index ``lengths``.
  """
  lengths = pt.check_inputs(lengths, num_devices, capacity)
  pt.min_degrees(
    lengths, capacity, num_devices
  )  # clear error if one cannot fit
  num_rounds = max(1, math.ceil(lengths.sum() / (num_devices * capacity)))
  args = (num_devices, capacity, cost, round_planner, planner_kwargs)
  problem_args = (num_devices, capacity, cost)
  best = None
  first = None
  while num_rounds <= len(lengths):
    if best is not None and (
      num_rounds > first + max_extra_rounds
      or _bound(lengths, num_rounds, problem_args) >= best.total_ms
    ):
      return best
    plan = _plan_rounds(lengths, num_rounds, *args)
    if plan is not None:
      if best is not None and plan.total_ms >= best.total_ms:
        return best
      if first is None:
        first = num_rounds
      best = plan
      num_rounds += 1
      continue
    if best is not None:
      return best
    if num_rounds == len(lengths):
      break
    num_rounds = min(len(lengths), num_rounds + max(1, num_rounds // 16))
  if best is not None:
    return best
  raise ValueError(
    f'{round_planner.__name__} found no feasible plan for {len(lengths)} '
    f'sequences on {num_devices} ranks, even one sequence per round.'
  )
