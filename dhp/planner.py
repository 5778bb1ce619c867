"""The DHP planner: BFD packing, then a 2-D DP over (group, ranks).

For one micro-batch (a "round") of sequences on N ranks with a per-rank
token capacity C:

1. ``min_degrees``: m_i = ceil(L_i / C), the fewest ranks that hold L_i.
2. ``bfd_pack``: Best-Fit Decreasing packs sequences into atomic groups
   (bins) of capacity min_cp * C, so short sequences fill the room long ones
   leave.
3. ``allocate_dp``: D[k][j] = min_{d in [m_k, j]} max(D[k-1][j-d], T_k(d)),
   D[0][0] = 0 only, any integer degree; backtracking gives d_k. It is the
   paper's O(K' N^2) programme, vectorised over (j, d) with NumPy.
   ``allocate_threshold`` computes the same optimum in O(K' N log) by
   bisection on the makespan (each group independently takes the fewest
   ranks that meet it); ``allocate`` picks one by problem size.
4. ``assign_leftover``: spare ranks go to the critical-path group while that
   shortens it.
5. ``place_groups``: contiguous rank ranges, largest group first, small
   groups best-fit into nodes so that they do not straddle a node boundary.

``plan_batch`` splits a global batch into work-balanced rounds (LPT) and
plans each with any round planner (DHP's ``plan_round`` or a baseline).
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import math
from collections.abc import Callable

import numpy as np

from dhp import cost_model as cm

_DP_MAX_CELLS = 100_000
_EXACT_SEARCH_CELLS = 65_536


@dataclasses.dataclass(frozen=True)
class GroupPlan:
  """One group: which sequences, on which contiguous ranks, how long.

  Attributes:
    seq_ids: int array [n] of indices into the batch given to the planner.
    degree: ring degree d (number of ranks).
    offset: first rank; the group runs on ranks offset .. offset + d - 1.
    time_ms: T(G, d) with the bandwidth of its actual placement.
  """

  seq_ids: np.ndarray
  degree: int
  offset: int
  time_ms: float


@dataclasses.dataclass(frozen=True)
class RoundPlan:
  """A plan for one micro-batch on ``num_devices`` ranks."""

  groups: tuple[GroupPlan, ...]
  num_devices: int
  estimated_ms: float

  @property
  def makespan_ms(self) -> float:
    return max(g.time_ms for g in self.groups)

  @property
  def degrees(self) -> list[int]:
    return [g.degree for g in self.groups]

  @property
  def utilisation(self) -> float:
    """U = sum_g d_g T_g / (N M): busy fraction of device-time."""
    busy = sum(g.degree * g.time_ms for g in self.groups)
    return busy / (self.num_devices * self.makespan_ms)

  @property
  def idle_ranks(self) -> int:
    return self.num_devices - sum(self.degrees)


@dataclasses.dataclass(frozen=True)
class BatchPlan:
  """A global batch as a sequence of rounds (micro-batches)."""

  rounds: tuple[RoundPlan, ...]

  @property
  def total_ms(self) -> float:
    return sum(r.makespan_ms for r in self.rounds)

  @property
  def utilisation(self) -> float:
    busy = sum(g.degree * g.time_ms for r in self.rounds for g in r.groups)
    return busy / (self.rounds[0].num_devices * self.total_ms)


RoundPlanner = Callable[..., RoundPlan | None]


def check_inputs(lengths, num_devices, capacity) -> np.ndarray:
  """Validates a batch; returns lengths as int64 [B]."""
  if int(num_devices) != num_devices or num_devices < 1:
    raise ValueError(f'num_devices={num_devices!r}: must be an int >= 1.')
  if not (math.isfinite(capacity) and capacity > 0):
    raise ValueError(f'capacity={capacity!r} tokens per device: must be > 0.')
  arr = np.asarray(lengths)
  if arr.ndim != 1 or arr.size == 0:
    raise ValueError(
      f'lengths must be a non-empty 1-D array, got shape {arr.shape}.'
    )
  if not np.issubdtype(arr.dtype, np.integer):
    if not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
      raise ValueError('lengths must be positive finite integers.')
  if arr.min() <= 0:
    raise ValueError(f'lengths must be > 0, got min {arr.min()}.')
  return arr.astype(np.int64, copy=False)


def min_degrees(lengths, capacity, num_devices, power_of_two=False):
  """m_i = ceil(L_i / C) (rounded up to 2^k if asked). int64 [B].

  Raises:
    ValueError: a sequence does not fit even on all ``num_devices`` ranks.
  """
  lengths = np.asarray(lengths)
  m = np.maximum(1, -(-lengths // int(capacity))).astype(np.int64)
  if power_of_two:
    m = (2 ** np.ceil(np.log2(m))).astype(np.int64)
  too_long = np.nonzero(m > num_devices)[0]
  if too_long.size:
    i = int(too_long[0])
    raise ValueError(
      f'sequence {i} has {int(lengths[i])} tokens and needs {int(m[i])} '
      f'ranks of capacity {capacity}, but the cluster has only '
      f'{num_devices} ranks ({num_devices * capacity} tokens); '
      f'{too_long.size} sequence(s) cannot fit.'
    )
  return m


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


def _masked_table(table, min_cp, allowed):
  t = np.array(table, dtype=np.float64)
  d = np.arange(t.shape[1])
  t[d[None, :] < np.asarray(min_cp)[:, None]] = np.inf
  if allowed is not None:
    t[:, ~np.asarray(allowed, bool)] = np.inf
  t[:, 0] = np.inf
  return t


def allocate_dp(table, min_cp, num_devices, allowed=None):
  """The 2-D DP over (group, ranks). O(K N^2), vectorised per group.

  Args:
    table: [K, N + 1] T_k(d) (column 0 unused).
    min_cp: [K] minimum degree per group.
    num_devices: N.
    allowed: optional bool [N + 1], degrees that may be used.

  Returns:
    (degrees [K] int64, makespan) or None if no allocation fits N ranks.
  """
  t = _masked_table(table, min_cp, allowed)
  k_groups, n1 = t.shape
  j = np.arange(n1)
  # padded[n1 - 1 + j - d] = D[k - 1][j - d], +inf where j - d < 0.
  idx = (n1 - 1) + j[:, None] - j[None, :]
  padded = np.full(2 * n1 - 1, np.inf)
  padded[n1 - 1] = 0.0  # D[0][0] = 0; D[0][j > 0] = inf
  choice = np.zeros((k_groups, n1), np.int64)
  for k in range(k_groups):
    cand = np.maximum(padded[idx], t[k])
    choice[k] = cand.argmin(axis=1)
    padded[n1 - 1 :] = cand[j, choice[k]]
  best = padded[n1 - 1 :]
  j_end = int(np.argmin(best[: num_devices + 1]))
  makespan = float(best[j_end])
  if not np.isfinite(makespan):
    return None
  degrees = np.empty(k_groups, np.int64)
  for k in range(k_groups - 1, -1, -1):
    degrees[k] = choice[k, j_end]
    j_end -= int(degrees[k])
  return degrees, makespan


def allocate_threshold(
  table, min_cp, num_devices, allowed=None, devices_per_node=None
):
  """Same optimum as ``allocate_dp`` by bisection on the makespan M.

  For a makespan M each group independently needs the fewest ranks
  d_k(M) with T_k(d) <= M; M is feasible iff sum_k d_k(M) <= N. The optimum
  is the smallest feasible M among the table's values.

  With ``devices_per_node``, M is feasible only if the groups smaller than a
  node can also be packed into nodes without straddling one (``fits_nodes``),
  so the table's intra-node bandwidth holds for them after placement.

  Returns:
    (degrees [K] int64, makespan) or None if no allocation fits N ranks.
  """
  t = _masked_table(table, min_cp, allowed)
  pm = np.minimum.accumulate(t, axis=1)  # non-increasing in d
  n1 = pm.shape[1]

  def need(m):
    return (pm > m).sum(axis=1)  # first d with pm <= m

  def fits_sum(m):
    n = need(m)
    return bool(n.max() < n1 and n.sum() <= num_devices)

  def fits_all(m):
    if not fits_sum(m):
      return False
    return devices_per_node is None or fits_nodes(
      need(m), num_devices, devices_per_node
    )

  def bisect_min(feasible, lo, hi):
    """Smallest feasible M in (lo, hi]; feasible(hi) is True."""
    if pm.size <= _EXACT_SEARCH_CELLS:  # over the table's own values
      cand = np.unique(pm[(pm > lo) & (pm <= hi)])
      a, b = 0, len(cand) - 1
      while a < b:
        mid = (a + b) // 2
        if feasible(cand[mid]):
          b = mid
        else:
          a = mid + 1
      return float(cand[b])
    for _ in range(200):  # large tables: bisection on the value
      if hi - lo <= 1e-13 * hi:
        break
      mid = 0.5 * (lo + hi)
      if feasible(mid):
        hi = mid
      else:
        lo = mid
    return hi

  hi = float(pm[np.arange(len(pm)), np.argmax(np.isfinite(pm), axis=1)].max())
  if not np.isfinite(hi) or not fits_sum(hi):
    return None
  lo = float(pm[:, -1].max())
  # The sum test is cheap; the node-packing test only narrows it further.
  best = lo if fits_sum(lo) else bisect_min(fits_sum, lo, hi)
  if not fits_all(best):
    if not fits_all(hi):
      return None
    best = bisect_min(fits_all, best, hi)
  degrees = need(best).astype(np.int64)
  makespan = float(pm[np.arange(len(pm)), degrees].max())
  return degrees, makespan


def allocate(
  table, min_cp, num_devices, allowed=None, method='auto', devices_per_node=None
):
  """Optimal degrees for the bins.

  Args:
    table: [K, N + 1] T_k(d).
    min_cp: [K] minimum degrees.
    num_devices: N.
    allowed: optional bool [N + 1] of usable degrees.
    method: 'dp' (the paper's 2-D DP), 'threshold' (same optimum, faster,
      and node-aware) or 'auto' (threshold when node packing matters or the
      DP would touch more than 1e5 cells, else the DP).
    devices_per_node: node size for the node-aware threshold solver.

  Returns:
    (degrees [K], makespan) or None.
  """
  node_bound = devices_per_node is not None and num_devices > devices_per_node
  if method == 'auto':
    cells = len(table) * (num_devices + 1) ** 2
    method = 'dp' if cells <= _DP_MAX_CELLS and not node_bound else 'threshold'
  if method == 'dp':
    return allocate_dp(table, min_cp, num_devices, allowed)
  if method == 'threshold':
    return allocate_threshold(
      table,
      min_cp,
      num_devices,
      allowed,
      devices_per_node if node_bound else None,
    )
  raise ValueError(f"method={method!r}: must be 'auto', 'dp' or 'threshold'.")


def assign_leftover(
  table, degrees, num_devices, allowed=None, devices_per_node=None
):
  """Gives spare ranks to the critical-path group while it gets faster.

  With ``devices_per_node``, a rank is given only if the groups still pack
  into nodes (``fits_nodes``).

  Returns:
    New degrees [K] int64 (sum <= num_devices).
  """
  degrees = np.array(degrees, np.int64)
  n1 = table.shape[1]
  ok = np.ones(n1, bool) if allowed is None else np.asarray(allowed, bool)
  rows = np.arange(len(degrees))
  while True:
    spare = num_devices - int(degrees.sum())
    if spare <= 0:
      return degrees
    times = table[rows, degrees]
    g = int(np.argmax(times))
    d = int(degrees[g])
    options = np.nonzero(ok[d + 1 : min(d + spare, n1 - 1) + 1])[0]
    if not options.size or table[g, d + 1 + options[0]] >= times[g]:
      return degrees
    grown = degrees.copy()
    grown[g] = d + 1 + options[0]
    if devices_per_node is not None and not fits_nodes(
      grown, num_devices, devices_per_node
    ):
      return degrees
    degrees = grown


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
  lengths, groups, degrees, num_devices, cost, comm, estimated_ms
):
  """Places groups and evaluates their placement-aware times (vectorised)."""
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
    GroupPlan(np.asarray(ids, np.int64), int(d), int(off), float(t))
    for ids, d, off, t in zip(groups, degrees, offsets, times, strict=True)
  )
  return RoundPlan(plans, num_devices, float(estimated_ms))


def _part_min(lengths, m, ids, capacity, power_of_two):
  need = max(int(m[ids].max()), -(-int(lengths[ids].sum()) // int(capacity)))
  if power_of_two:
    need = 1 << (need - 1).bit_length()
  return need


def _candidate_splits(lengths, ids, work):
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
  lengths,
  m,
  bins,
  bin_min,
  table,
  degrees,
  makespan,
  num_devices,
  capacity,
  cost,
  comm,
  allowed,
  method,
  power_of_two=False,
  per=None,
  max_splits=None,
):
  """Splits the critical-path group while that lowers the optimal makespan.

  BFD packs by memory only, so a long sequence can share its bin with short
  ones that lengthen the critical path. Each step tries two splits of the
  critical group (its longest sequence alone; LPT halves by work), re-solves
  the allocation exactly and keeps the better split if it helps.

  Returns:
    (bins, bin_min, table, degrees, makespan), updated.
  """
  work = cost.a1 * lengths.astype(np.float64) ** 2 + cost.a2 * lengths
  max_splits = len(lengths) if max_splits is None else max_splits
  for _ in range(max_splits):
    times = table[np.arange(len(degrees)), degrees]
    g = int(np.argmax(times))
    ids = np.nonzero(bins == g)[0]
    if len(ids) < 2:
      break
    best = None
    for keep, move in _candidate_splits(lengths, ids, work):
      new_min = np.append(bin_min, 0)
      new_min[g] = _part_min(lengths, m, keep, capacity, power_of_two)
      new_min[-1] = _part_min(lengths, m, move, capacity, power_of_two)
      if new_min.sum() > num_devices:
        continue
      local = np.zeros(len(ids), np.int64)
      local[np.isin(ids, move)] = 1
      rows = cost.time_table(
        lengths[ids],
        local,
        2,
        num_devices,
        comm,
        None if per is None else per[ids],
      )
      new_table = np.concatenate([table, rows[1:]])
      new_table[g] = rows[0]
      result = allocate(
        new_table, new_min, num_devices, allowed, method, cost.devices_per_node
      )
      if result is not None and result[1] < makespan * (1 - 1e-12):
        if best is None or result[1] < best[4]:
          new_bins = bins.copy()
          new_bins[move] = len(bin_min)
          best = (new_bins, new_min, new_table, result[0], result[1])
    if best is None:
      break
    bins, bin_min, table, degrees, makespan = best
  return bins, bin_min, table, degrees, makespan


def _solve_packing(
  lengths,
  m,
  pack_capacity,
  capacity,
  num_devices,
  cost,
  comm,
  allowed,
  method,
  power_of_two,
  per,
):
  """BFD at ``pack_capacity`` tokens per rank (0: one sequence per group),
  then the exact allocation."""
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
  if power_of_two:
    bin_min = (2 ** np.ceil(np.log2(bin_min))).astype(np.int64)
  if bin_min.sum() > num_devices:
    return None
  table = cost.time_table(lengths, bins, num_bins, num_devices, comm, per)
  result = allocate(
    table, bin_min, num_devices, allowed, method, cost.devices_per_node
  )
  if result is None:
    return None
  degrees, makespan = result
  return bins, bin_min, table, degrees, makespan


def improve(
  lengths,
  m,
  bins,
  bin_min,
  table,
  degrees,
  makespan,
  capacity,
  num_devices,
  cost,
  comm,
  allowed,
  method,
  power_of_two,
  per,
):
  """``refine_groups``, then up to two ``rebalance`` passes that help."""
  bins, bin_min, table, degrees, makespan = refine_groups(
    lengths,
    m,
    bins,
    bin_min,
    table,
    degrees,
    makespan,
    num_devices,
    capacity,
    cost,
    comm,
    allowed,
    method,
    power_of_two,
    per,
  )
  for _ in range(2):
    sol = rebalance(
      lengths,
      m,
      bins,
      degrees,
      capacity,
      num_devices,
      cost,
      comm,
      allowed,
      method,
      power_of_two,
      per,
    )
    if sol is None or sol[4] >= makespan * (1 - 1e-12):
      break
    bins, bin_min, table, degrees, makespan = sol
  return bins, bin_min, table, degrees, makespan


def rebalance(
  lengths,
  m,
  bins,
  degrees,
  capacity,
  num_devices,
  cost,
  comm,
  allowed,
  method,
  power_of_two,
  per=None,
):
  """Keeps the group degrees, re-assigns sequences by LPT, re-solves degrees.

  Sequences (longest work first) go to the group that would finish
  earliest among those with degree >= m_i and token room; BFD balances
  memory only, this balances time. The allocation is then solved again for
  the new groups.

  Returns:
    (bins, bin_min, table, degrees, makespan) or None if some sequence finds
    no group.
  """
  k = len(degrees)
  if per is None:
    per = cost.degree_table(lengths, num_devices, comm)
  full_per = per
  per = per[:, np.asarray(degrees) - 1]  # [B, K]
  loads = np.full(k, float(cost.beta))
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
  if power_of_two:
    bin_min = (2 ** np.ceil(np.log2(bin_min))).astype(np.int64)
  table = cost.time_table(
    lengths, new_bins, num_bins, num_devices, comm, full_per
  )
  result = allocate(
    table, bin_min, num_devices, allowed, method, cost.devices_per_node
  )
  if result is None:
    return None
  return new_bins, bin_min, table, result[0], result[1]


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
):
  """DHP for one micro-batch: min degrees, BFD, DP, leftover, placement.

  Args:
    lengths: [B] tokens of this round's sequences.
    num_devices: N ranks in the CP domain.
    capacity: tokens per rank.
    cost: the cost model.
    power_of_two: restrict degrees to powers of two (FlexSP-style baseline).
    method: allocation solver, see ``allocate``.
    comm: 'ring' (DHP) or 'ulysses'.
    refine: split critical-path groups after the DP (``refine_groups``).
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
  lengths = check_inputs(lengths, num_devices, capacity)
  if not pack_scales or any(not 0 <= f < math.inf for f in pack_scales):
    raise ValueError(f'pack_scales={pack_scales!r}: need finite values >= 0.')
  m = min_degrees(lengths, capacity, num_devices, power_of_two)
  allowed = None
  if power_of_two:
    allowed = np.zeros(num_devices + 1, bool)
    allowed[2 ** np.arange(int(np.log2(num_devices)) + 1)] = True
  per = cost.degree_table(lengths, num_devices, comm)  # [B, N]
  # No plan beats the slowest sequence alone on its best allowed degree.
  usable = np.arange(1, num_devices + 1)[None, :] >= m[:, None]
  if allowed is not None:
    usable &= np.asarray(allowed, bool)[None, 1:]
  bound = float(np.where(usable, per, np.inf).min(axis=1).max()) + cost.beta
  tight = bound * (1 + 1e-12)
  best = None
  for f in pack_scales:
    if best is not None and best[4] <= tight:
      break
    sol = _solve_packing(
      lengths,
      m,
      0 if f == 0 else max(1, int(f * capacity)),
      capacity,
      num_devices,
      cost,
      comm,
      allowed,
      method,
      power_of_two,
      per,
    )
    if sol is not None and (best is None or sol[4] < best[4]):
      best = sol
  if best is None:
    return None
  if refine and best[4] > tight:
    best = improve(
      lengths,
      m,
      *best,
      capacity,
      num_devices,
      cost,
      comm,
      allowed,
      method,
      power_of_two,
      per,
    )
  bins, _, table, degrees, makespan = best
  degrees = assign_leftover(
    table, degrees, num_devices, allowed, cost.devices_per_node
  )
  estimated = float(table[np.arange(len(degrees)), degrees].max())
  assert estimated <= makespan * (1 + 1e-12), (estimated, makespan)
  order = np.argsort(bins, kind='stable')
  groups = np.split(order, np.cumsum(np.bincount(bins))[:-1])
  return finalize_round(
    lengths, groups, degrees, num_devices, cost, comm, estimated
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
  round_planner: RoundPlanner = plan_round,
  **planner_kwargs,
):
  """Plans a global batch: the fewest LPT rounds that each planner accepts.

  Starts from R = ceil(sum L / (N C)) rounds and adds one while any round's
  planner returns None.

  Returns:
    BatchPlan whose seq_ids index ``lengths``.
  """
  lengths = check_inputs(lengths, num_devices, capacity)
  min_degrees(lengths, capacity, num_devices)  # clear error if one cannot fit
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
        GroupPlan(idx[g.seq_ids], g.degree, g.offset, g.time_ms)
        for g in plan.groups
      )
      rounds.append(dataclasses.replace(plan, groups=groups))
    else:
      return BatchPlan(tuple(rounds))
    if num_rounds == len(lengths):
      break
    num_rounds = min(len(lengths), num_rounds + max(1, num_rounds // 16))
  raise ValueError(
    f'{round_planner.__name__} found no feasible plan for {len(lengths)} '
    f'sequences on {num_devices} ranks, even one sequence per round.'
  )
