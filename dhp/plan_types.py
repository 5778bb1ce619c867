"""The planner's problem and solution types, and input validation.

* ``RoundProblem``: one round to plan (its sequences, the cluster, the cost
  model and the solver options), built once by ``RoundProblem.build`` and
  passed to every step of the planner instead of a dozen positional
  arguments.
* ``Grouping``: an intermediate solution (atomic groups with their degrees
  and makespan) that packing, allocation and local search pass along.
* ``GroupPlan`` / ``RoundPlan`` / ``BatchPlan``: the placed result.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from dhp import cost_model as cm


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


class Grouping(NamedTuple):
  """Atomic groups of a round with their optimal degrees.

  Attributes:
    bins: int64 [B], the group of each sequence (0 .. K - 1).
    bin_min: int64 [K], the fewest ranks each group may run on.
    table: float64 [K, N + 1], T_k(d) (column 0 is +inf).
    degrees: int64 [K], the allocated degrees.
    makespan: max_k T_k(degrees[k]), the allocation's objective.
  """

  bins: np.ndarray
  bin_min: np.ndarray
  table: np.ndarray
  degrees: np.ndarray
  makespan: float


@dataclasses.dataclass(frozen=True, eq=False)
class RoundProblem:
  """One round to plan; the fixed inputs of every planner step.

  The per-sequence and per-group tables cover degrees 1..``width`` only
  (``table_width``): beyond the last degree at which a sequence still gets
  faster than at every smaller degree, no group of it gets faster either
  (every term of T grows with the lengths, so that degree grows with L and
  is taken on a log-spaced grid of lengths up to the longest). Degrees above
  ``width`` are evaluated on demand (static and one-group candidates).

  Attributes:
    lengths: int64 [B] tokens per sequence.
    min_deg: int64 [B], m_i = ceil(L_i / C) (2^k with ``power_of_two``).
    num_devices: N ranks in the CP domain.
    capacity: C tokens per rank.
    cost: the cost model.
    comm: 'ring' or 'ulysses'.
    width: W, the widest degree in the tables (min_deg.max() <= W <= N).
    per: float64 [B, W + 1] per-sequence times at degrees 0..W (column 0
      is +inf), without beta.
    allowed: bool [N + 1] of usable degrees, or None for all.
    method: allocation solver, see ``allocation.allocate``.
    power_of_two: degrees are restricted to powers of two.
  """

  lengths: np.ndarray
  min_deg: np.ndarray
  num_devices: int
  capacity: float
  cost: cm.CostModel
  comm: str
  width: int
  per: np.ndarray
  allowed: np.ndarray | None
  method: str
  power_of_two: bool

  @classmethod
  def build(
    cls,
    lengths,
    num_devices,
    capacity,
    cost: cm.CostModel,
    power_of_two=False,
    method='auto',
    comm=cm.RING,
  ) -> RoundProblem:
    """Validates a round (``check_inputs``, ``min_degrees``) and builds it.

    ``lengths`` must already be validated by ``check_inputs``.
    """
    m = min_degrees(lengths, capacity, num_devices, power_of_two)
    allowed = None
    if power_of_two:
      allowed = np.zeros(num_devices + 1, bool)
      allowed[2 ** np.arange(int(np.log2(num_devices)) + 1)] = True
    width = table_width(lengths, num_devices, cost, comm, int(m.max()))
    per = np.empty((len(lengths), width + 1))
    per[:, 0] = np.inf
    per[:, 1:] = cost.degree_table(lengths, width, comm)
    return cls(
      lengths=lengths,
      min_deg=m,
      num_devices=num_devices,
      capacity=capacity,
      cost=cost,
      comm=comm,
      width=width,
      per=per,
      allowed=allowed,
      method=method,
      power_of_two=power_of_two,
    )

  @functools.cached_property
  def _usable(self) -> np.ndarray:
    ok = np.ones(self.num_devices + 1, bool)
    ok[0] = False
    if self.allowed is not None:
      ok &= np.asarray(self.allowed, bool)
    return ok

  def usable(self, num_cols=None) -> np.ndarray:
    """bool [num_cols] (default W + 1): degrees ``allowed`` permits."""
    return self._usable[: self.width + 1 if num_cols is None else num_cols]

  def lower_bound(self) -> float:
    """No plan beats the slowest sequence alone on its best allowed degree.

    Every term of T grows with L, so that is the longest sequence; its row
    is evaluated at every degree up to N (not only the table's width).
    """
    longest = int(np.argmax(self.lengths))
    d = np.arange(int(self.min_deg[longest]), self.num_devices + 1)
    if self.allowed is not None:
      d = d[np.asarray(self.allowed, bool)[d]]
    t = self.cost.sequence_times(float(self.lengths[longest]), d, self.comm)
    return float(t.min()) + self.cost.beta


DENSE_WIDTH = 64  # up to this many devices the tables cover every degree
_WIDTH_GRID = 16  # lengths sampled (log-spaced) to find the table width


def table_width(lengths, num_devices, cost: cm.CostModel, comm, min_width=1):
  """W: the last degree at which some sequence still beats all smaller ones.

  N itself for N <= ``DENSE_WIDTH``. Otherwise the last prefix-minimum
  record of t(L, d) over d = 1..N, for ``_WIDTH_GRID`` log-spaced lengths
  from the shortest to the longest, and at least ``min_width``.
  """
  if num_devices <= DENSE_WIDTH:
    return int(num_devices)
  lengths = np.asarray(lengths, np.float64)
  grid = np.unique(
    np.geomspace(lengths.min(), lengths.max(), _WIDTH_GRID).round()
  )
  d = np.arange(1, num_devices + 1)
  t = cost.sequence_times(grid[:, None], d[None, :], comm)  # [G, N]
  best_so_far = np.minimum.accumulate(t, axis=1)
  record = np.zeros_like(t, bool)
  record[:, 0] = True
  record[:, 1:] = t[:, 1:] < best_so_far[:, :-1]
  last = int(np.nonzero(record.any(axis=0))[0].max()) + 1
  return int(min(num_devices, max(last, min_width)))


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


def round_up_pow2(bin_min, power_of_two):
  """``bin_min`` rounded up to powers of two when ``power_of_two``."""
  if power_of_two:
    return (2 ** np.ceil(np.log2(bin_min))).astype(np.int64)
  return bin_min
