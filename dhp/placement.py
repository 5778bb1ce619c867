"""Placement: contiguous rank ranges for the groups, and the placed plan.

Groups are laid out largest first from rank 0; groups smaller than a node
are best-fit into the free ranks of one node, so they do not straddle a
node boundary (and keep the intra-node bandwidth the planner assumed).
``finalize_round`` places a round's groups and times each one with the
bandwidth of its actual placement.
"""

from __future__ import annotations

import bisect

import numpy as np

from dhp import cost_model as cm
from dhp import plan_types as pt


def _pack(degrees, num_devices, node):
  """Offsets for groups, or None if small groups would straddle nodes.

  Groups of >= ``node`` ranks go first, contiguously from rank 0, largest
  first. Smaller groups are then best-fit (least slack, lowest rank on ties)
  into the free ranks of each node, so none of them straddles a node.
  """
  degs = np.asarray(degrees, np.int64).tolist()
  if sum(degs) > num_devices:
    return None
  order = sorted(range(len(degs)), key=lambda g: -degs[g])  # stable
  offsets = [0] * len(degs)
  cursor = 0
  small = []
  for g in order:
    if degs[g] >= node:
      offsets[g] = cursor
      cursor += degs[g]
    else:
      small.append(g)
  if small:
    segments = []  # sorted (free ranks, first free rank) per node
    start = cursor
    while start < num_devices:
      end = min((start // node + 1) * node, num_devices)
      segments.append((end - start, start))
      start = end
    segments.sort()
    for g in small:
      d = degs[g]
      pos = bisect.bisect_left(segments, (d, -1))
      if pos == len(segments):
        return None
      free, first = segments.pop(pos)
      offsets[g] = first
      if free > d:
        bisect.insort(segments, (free - d, first + d))
  return np.array(offsets, np.int64)


def fits_nodes(degrees, num_devices, devices_per_node):
  """True iff ``_pack`` places the groups without any small one straddling."""
  return _pack(degrees, num_devices, devices_per_node) is not None


def place_groups(degrees, num_devices, devices_per_node):
  """Contiguous rank offsets; groups smaller than a node stay in one node.

  Groups are laid out largest first from rank 0 (a canonical layout, so few
  distinct (offset, size) pairs occur); groups smaller than a node are
  best-fit into the free ranks of a node. If that fails (fragmentation), all
  groups are laid out contiguously in that order and some straddle a node
  boundary (and pay inter-node bandwidth).

  Returns:
    offsets [K] int64.
  """
  degrees = np.asarray(degrees, np.int64)
  offsets = _pack(degrees, num_devices, devices_per_node)
  if offsets is None:
    order = np.argsort(-degrees, kind='stable')
    offsets = np.zeros(len(degrees), np.int64)
    offsets[order] = np.concatenate([[0], np.cumsum(degrees[order])[:-1]])
  return offsets


def finalize_round(
  lengths,
  groups,
  degrees,
  cost: cm.CostModel,
  *,
  num_devices,
  comm,
  estimated_ms,
) -> pt.RoundPlan:
  """Places groups and evaluates their placement-aware times (vectorised).

  Args:
    lengths: int64 [B] tokens of the round's sequences.
    groups: K int arrays of indices into ``lengths``.
    degrees: [K] ring degree of each group.
    cost: the cost model.
    num_devices: N ranks in the CP domain.
    comm: 'ring' or 'ulysses'.
    estimated_ms: the planner's makespan estimate (kept in the plan).

  Returns:
    RoundPlan whose seq_ids index ``lengths``.
  """
  degrees = np.asarray(degrees, np.int64)
  offsets = place_groups(degrees, num_devices, cost.devices_per_node)
  node = cost.devices_per_node
  crosses = offsets // node != (offsets + degrees - 1) // node
  sizes = np.array([len(ids) for ids in groups])
  owner = np.repeat(np.arange(len(groups)), sizes)
  ids_all = np.concatenate(groups)
  per_seq = cost.sequence_times(
    lengths[ids_all], degrees[owner], comm, crosses_node=crosses[owner]
  )
  times = np.bincount(owner, per_seq, minlength=len(groups)) + cost.beta
  plans = tuple(
    pt.GroupPlan(np.asarray(ids, np.int64), int(d), int(off), float(t))
    for ids, d, off, t in zip(groups, degrees, offsets, times, strict=True)
  )
  return pt.RoundPlan(plans, num_devices, float(estimated_ms))
