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
from dhp import local_search
from dhp import packing
from dhp import placement
from dhp import plan_types as pt


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
  """DHP for one micro-batch: min degrees, BFD, DP, leftover, placement.

  Args:
    lengths: [B] tokens of this round's sequences.
    num_devices: N ranks in the CP domain.
    capacity: tokens per rank.
    cost: the cost model.
    power_of_two: restrict degrees to powers of two (FlexSP-style baseline).
    method: allocation solver, see ``allocation.allocate``.
    comm: 'ring' (DHP) or 'ulysses'.
    refine: split critical-path groups and rebalance after the DP
      (``local_search.improve``).
    pack_scales: BFD is run with bins of s * C tokens per rank for each s
      and the plan with the lowest makespan is kept. s = 1 is the paper's
      memory-tight packing; s < 1 makes lighter atomic groups (s = 0: every
      sequence alone) and s > 1 heavier ones that the DP then spreads over
      more ranks, when memory is not the binding constraint.
      ``refine=False, pack_scales=(1.0,)`` is the paper's BFD + DP alone.

  Returns:
    RoundPlan with seq_ids indexing ``lengths``, or None when the atomic
    groups need more than N ranks (the round must be split).
  """
  lengths = pt.check_inputs(lengths, num_devices, capacity)
  if not pack_scales or any(not 0 <= f < math.inf for f in pack_scales):
    raise ValueError(f'pack_scales={pack_scales!r}: need finite values >= 0.')
  problem = pt.RoundProblem.build(
    lengths, num_devices, capacity, cost, power_of_two, method, comm
  )
  tight = problem.lower_bound() * (1 + 1e-12)
  best = None
  for f in pack_scales:
    if best is not None and best.makespan <= tight:
      break
    sol = packing.solve_packing(
      problem, 0 if f == 0 else max(1, int(f * capacity))
    )
    if sol is not None and (best is None or sol.makespan < best.makespan):
      best = sol
  if best is None:
    return None
  if refine and best.makespan > tight:
    best = local_search.improve(problem, best)
  degrees = allocation.assign_leftover(
    best.table,
    best.degrees,
    num_devices,
    problem.allowed,
    cost.devices_per_node,
  )
  estimated = float(best.table[np.arange(len(degrees)), degrees].max())
  assert estimated <= best.makespan * (1 + 1e-12), (estimated, best.makespan)
  order = np.argsort(best.bins, kind='stable')
  groups = np.split(order, np.cumsum(np.bincount(best.bins))[:-1])
  return placement.finalize_round(
    lengths,
    groups,
    degrees,
    cost,
    num_devices=num_devices,
    comm=comm,
    estimated_ms=estimated,
  )


def split_rounds(lengths, num_rounds, cost: cm.CostModel):
  """LPT split of a batch into rounds balanced by work a1 L^2 + a2 L.

  Returns:
    list of ``num_rounds`` sorted int64 index arrays (some may be empty).
  """
  lengths = np.asarray(lengths, np.float64)
  work = cost.a1 * lengths**2 + cost.a2 * lengths
  order = np.argsort(-work, kind='stable')
  heap = [(0.0, r) for r in range(num_rounds)]
  members: list[list[int]] = [[] for _ in range(num_rounds)]
  for i, w in zip(order.tolist(), work[order].tolist(), strict=True):
    load, r = heap[0]
    members[r].append(i)
    heapq.heapreplace(heap, (load + w, r))
  return [np.sort(np.array(m, np.int64)) for m in members]


def plan_batch(
  lengths,
  num_devices,
  capacity,
  cost: cm.CostModel,
  round_planner: pt.RoundPlanner = plan_round,
  **planner_kwargs,
) -> pt.BatchPlan:
  """Plans a global batch: the fewest LPT rounds that each planner accepts.

  Starts from R = ceil(sum L / (N C)) rounds and adds one while any round's
  planner returns None.

  Returns:
    BatchPlan whose seq_ids index ``lengths``.
  """
  lengths = pt.check_inputs(lengths, num_devices, capacity)
  pt.min_degrees(
    lengths, capacity, num_devices
  )  # clear error if one cannot fit
  num_rounds = max(1, math.ceil(lengths.sum() / (num_devices * capacity)))
  while num_rounds <= len(lengths):
    rounds = []
    for idx in split_rounds(lengths, num_rounds, cost):
      if idx.size == 0:
        continue
      plan = round_planner(
        lengths[idx], num_devices, capacity, cost, **planner_kwargs
      )
      if plan is None:
        break
      groups = tuple(
        pt.GroupPlan(idx[g.seq_ids], g.degree, g.offset, g.time_ms)
        for g in plan.groups
      )
      rounds.append(dataclasses.replace(plan, groups=groups))
    else:
      return pt.BatchPlan(tuple(rounds))
    if num_rounds == len(lengths):
      break
    num_rounds = min(len(lengths), num_rounds + max(1, num_rounds // 16))
  raise ValueError(
    f'{round_planner.__name__} found no feasible plan for {len(lengths)} '
    f'sequences on {num_devices} ranks, even one sequence per round.'
  )
