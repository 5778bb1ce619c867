"""Reference oracle: the exact optimum of a small round, by exhaustive search.

An independent check on the planner (and on ``baselines.exact_round``, which
solves the same problem by a min-max subset DP). This one bisects on the
makespan M over every value T(A, d) can take; at a fixed M each group A needs
the fewest ranks ``need(A, M) = min {d >= m_A allowed : T(A, d) <= M}`` and
M is feasible iff the partition minimising the total ranks uses <= N of
them. That minimum is a min-sum subset DP over every (S, A subset of S
holding S's lowest sequence) pair, enumerated once per batch size as
base-3 codes and evaluated one popcount layer at a time, so one
feasibility test is ~B vectorised operations on (3^B - 1) / 2 pairs.

Cost: O(2^B N) for the subset time table, O(3^B log(2^B N)) for the search.
B <= 12 (~0.1 s); larger batches raise.

The model is the planner's: T(A, d) = sum_{i in A} t_i(d) + beta with the
degree-based bandwidth (a group crosses a node iff d > devices_per_node),
memory d >= ceil(sum_{i in A} L_i / C), idle ranks allowed. Node packing of
small groups is not modelled, so with several nodes the value is a lower
bound on any placed plan; on one node it is the optimum.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from dhp import cost_model as cm

MAX_SEQUENCES = 12


@dataclasses.dataclass(frozen=True)
class ExhaustiveSolution:
  """The optimum of one round.

  Attributes:
    makespan_ms: the optimal makespan (inf when no plan exists).
    groups: tuple of int64 index arrays, one per group.
    degrees: tuple of ints, the ranks of each group.
  """

  makespan_ms: float
  groups: tuple[np.ndarray, ...]
  degrees: tuple[int, ...]

  @property
  def feasible(self) -> bool:
    return bool(np.isfinite(self.makespan_ms))


@functools.cache
def _pairs(b):
  """Every (S, A) with A subset of S and lowbit(S) in A, by |S| layer.

  Returns:
    list over popcount p = 1..b of (s [P], a [P], starts [U], heads [U]):
    pairs sorted by s, ``starts`` the first pair of each distinct s and
    ``heads`` those s values.
  """
  codes = np.arange(3**b, dtype=np.int64)
  s = np.zeros_like(codes)
  a = np.zeros_like(codes)
  c = codes.copy()
  for i in range(b):
    digit = c % 3  # 0: not in S, 1: in S \ A, 2: in A
    c //= 3
    s |= (digit > 0).astype(np.int64) << i
    a |= (digit == 2).astype(np.int64) << i
  keep = (s > 0) & ((a & s & -s) != 0)
  s, a = s[keep], a[keep]
  order = np.lexsort((a, s))
  s, a = s[order], a[order]
  pop = np.array([bin(v).count('1') for v in range(1 << b)])
  layers = []
  for p in range(1, b + 1):
    sel = pop[s] == p
    sp, ap = s[sel], a[sel]
    heads, starts = np.unique(sp, return_index=True)
    layers.append((sp, ap, starts, heads))
  return layers


def subset_times(
  lengths, num_devices, capacity, cost, allowed=None, comm=cm.RING
):
  """T(A, d) for every subset A and degree d; +inf where not allowed.

  Returns:
    float64 [2^B, N + 1] (row 0 and column 0 are +inf).
  """
  lengths = np.asarray(lengths, np.int64)
  b = len(lengths)
  d = np.arange(1, num_devices + 1)
  per = cost.sequence_times(lengths[:, None].astype(float), d[None, :], comm)
  member = (np.arange(1 << b)[:, None] >> np.arange(b)[None, :]) & 1  # [2^B, B]
  table = np.full((1 << b, num_devices + 1), np.inf)
  table[:, 1:] = member @ per + cost.beta
  tokens = member @ lengths
  need_mem = -(-tokens // int(capacity))
  bad = d[None, :] < need_mem[:, None]
  if allowed is not None:
    bad |= ~np.asarray(allowed, bool)[None, 1:]
  table[:, 1:][bad] = np.inf
  table[0] = np.inf
  return table


def _fewest_ranks(need, b):
  """Min over partitions of the full set of sum need(A); with the argmin.

  Returns:
    (g [2^B] min ranks per subset, arg [2^B] the chosen block A of S).
  """
  g = np.full(1 << b, np.inf)
  g[0] = 0.0
  arg = np.zeros(1 << b, np.int64)
  for s, a, starts, heads in _pairs(b):
    val = need[a] + g[s ^ a]
    best = np.minimum.reduceat(val, starts)
    g[heads] = best
    # argmin inside each segment: first pair attaining the segment minimum.
    hit = val == np.repeat(best, np.diff(np.append(starts, len(val))))
    first = np.minimum.reduceat(
      np.where(hit, np.arange(len(val)), len(val)), starts
    )
    arg[heads] = a[first]
  return g, arg


def exhaustive_round(
  lengths, num_devices, capacity, cost: cm.CostModel, allowed=None, comm=cm.RING
) -> ExhaustiveSolution:
  """The optimal makespan of one round over every partition and degree.

  Args:
    lengths: [B] tokens, B <= ``MAX_SEQUENCES``.
    num_devices: N ranks.
    capacity: tokens per rank.
    cost: the cost model.
    allowed: optional bool [N + 1] of usable degrees.
    comm: 'ring' or 'ulysses'.

  Returns:
    ExhaustiveSolution (makespan inf and no groups when no plan fits).
  """
  lengths = np.asarray(lengths, np.int64)
  b = len(lengths)
  if not 1 <= b <= MAX_SEQUENCES:
    raise ValueError(
      f'exhaustive_round handles 1..{MAX_SEQUENCES} sequences, got {b}.'
    )
  table = subset_times(lengths, num_devices, capacity, cost, allowed, comm)
  # need(A, M) = first d with T(A, d) <= M; a prefix minimum makes it a count.
  prefix = np.minimum.accumulate(table, axis=1)
  values = np.unique(prefix[np.isfinite(prefix)])
  n1 = num_devices + 1

  def need_at(m):
    count = (prefix > m).sum(axis=1).astype(float)
    return np.where(count >= n1, np.inf, count)

  def feasible(m):
    return _fewest_ranks(need_at(m), b)[0][-1] <= num_devices

  if values.size == 0 or not feasible(values[-1]):
    return ExhaustiveSolution(float('inf'), (), ())
  lo, hi = 0, len(values) - 1
  while lo < hi:
    mid = (lo + hi) // 2
    if feasible(values[mid]):
      hi = mid
    else:
      lo = mid + 1
  m = values[lo]
  need = need_at(m)
  _, arg = _fewest_ranks(need, b)
  groups, degrees = [], []
  s = (1 << b) - 1
  while s:
    a = int(arg[s])
    groups.append(np.nonzero((a >> np.arange(b)) & 1)[0].astype(np.int64))
    degrees.append(int(need[a]))
    s ^= a
  masks = [int(np.sum(np.int64(1) << gr)) for gr in groups]
  makespan = max(
    float(table[a, d]) for a, d in zip(masks, degrees, strict=True)
  )
  return ExhaustiveSolution(makespan, tuple(groups), tuple(degrees))
