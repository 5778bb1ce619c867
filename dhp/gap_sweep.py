"""The planner's gap to the exact optimum over a sweep of small rounds.

Instances are drawn over every length distribution of ``dhp.lengths``
(long-tail lognormal, Pareto, bimodal, multimodal, uniform), 2-12
sequences, 4-16 devices and memory utilisations 0.25-0.95 (the capacity C
is set so that sum L = u N C, loose to tight). Every instance has a plan
(one group of all N ranks holds everything), so a planner's "no plan"
(None) is a false "no plan" and counts as a failure: its gap is +inf and
enters every statistic.

The optimum is ``exhaustive.exhaustive_round``. The cost model is the
given one on a single node of ``max_devices`` ranks (``single_node``), where
that optimum is exact (node packing does not arise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from dhp import cost_model as cm
from dhp import exhaustive
from dhp import lengths as ln

DISTRIBUTIONS = ('long_tail', 'pareto', 'bimodal', 'multimodal', 'uniform')


@dataclasses.dataclass(frozen=True)
class Instance:
  """One round of the sweep.

  Attributes:
    lengths: int64 [B] tokens.
    num_devices: N.
    capacity: C tokens per rank (sum L = utilisation * N * C, rounded up).
    distribution: the length generator's name.
    utilisation: the target memory utilisation u.
  """

  lengths: np.ndarray
  num_devices: int
  capacity: int
  distribution: str
  utilisation: float


@dataclasses.dataclass(frozen=True)
class GapStats:
  """Makespan / optimum - 1 over a sweep (inf for a "no plan").

  Attributes:
    gaps: float64 [I] per instance.
    mean, median, p90, max: statistics of ``gaps`` (inf if any failed).
    within_1pct, within_5pct: fraction of instances at most 1 % / 5 % above.
    no_plan: instances where the planner returned None.
  """

  gaps: np.ndarray
  mean: float
  median: float
  p90: float
  max: float
  within_1pct: float
  within_5pct: float
  no_plan: int

  def line(self, label='dhp') -> str:
    return (
      f'{label}: gap over {len(self.gaps)} rounds: mean {self.mean:.2%}, '
      f'median {self.median:.2%}, p90 {self.p90:.2%}, max {self.max:.2%}, '
      f'within 1%: {self.within_1pct:.1%}, within 5%: {self.within_5pct:.1%}, '
      f'false "no plan": {self.no_plan}'
    )


def single_node(cost: cm.CostModel, num_devices=16) -> cm.CostModel:
  """``cost`` with one node of ``num_devices`` ranks (intra-node bandwidth
  of its widest table entry extended to that degree)."""
  table = dict(cost.bandwidth_table)
  widest = table[max(table)]
  if max(table) < num_devices:
    table[num_devices] = widest
  return dataclasses.replace(
    cost,
    devices_per_node=max(num_devices, cost.devices_per_node),
    bandwidth_table=tuple(sorted(table.items())),
  )


def sample_instances(
  count,
  seed,
  distributions=DISTRIBUTIONS,
  sequences=(2, 12),
  devices=(4, 16),
  utilisation=(0.25, 0.95),
) -> list[Instance]:
  """``count`` seeded instances; each range is inclusive.

  Raises:
    ValueError: a range is empty, or more than exhaustive.MAX_SEQUENCES.
  """
  if count < 1:
    raise ValueError(f'count={count}: must be >= 1.')
  for name, (lo, hi) in (('sequences', sequences), ('devices', devices)):
    if not 1 <= lo <= hi:
      raise ValueError(f'{name}=({lo}, {hi}): need 1 <= low <= high.')
  if sequences[1] > exhaustive.MAX_SEQUENCES:
    raise ValueError(
      f'sequences up to {sequences[1]}: the exact optimum handles at most '
      f'{exhaustive.MAX_SEQUENCES}.'
    )
  if not 0 < utilisation[0] <= utilisation[1] <= 1:
    raise ValueError(f'utilisation={utilisation}: need 0 < low <= high <= 1.')
  unknown = set(distributions) - set(ln.GENERATORS)
  if unknown or not distributions:
    raise ValueError(
      f'distributions {sorted(unknown) or distributions}: known '
      f'{sorted(ln.GENERATORS)}.'
    )
  rng = np.random.default_rng(seed)
  out = []
  for i in range(count):
    dist = distributions[i % len(distributions)]
    b = int(rng.integers(sequences[0], sequences[1] + 1))
    n = int(rng.integers(devices[0], devices[1] + 1))
    u = float(rng.uniform(*utilisation))
    lengths = ln.sample(dist, b, int(rng.integers(2**31)))
    capacity = int(np.ceil(lengths.sum() / (u * n)))
    out.append(Instance(lengths, n, capacity, dist, u))
  return out


def optima(instances, cost: cm.CostModel) -> np.ndarray:
  """The exact optimal makespan of every instance. float64 [I]."""
  return np.array(
    [
      exhaustive.exhaustive_round(
        x.lengths, x.num_devices, x.capacity, cost
      ).makespan_ms
      for x in instances
    ]
  )


def gap_stats(gaps) -> GapStats:
  """Statistics of per-instance gaps (inf: a failure)."""
  gaps = np.asarray(gaps, np.float64)
  return GapStats(
    gaps=gaps,
    mean=float(np.mean(gaps)),
    median=float(np.median(gaps)),
    p90=float(np.quantile(gaps, 0.9, method='higher')),
    max=float(np.max(gaps)),
    within_1pct=float(np.mean(gaps <= 0.01)),
    within_5pct=float(np.mean(gaps <= 0.05)),
    no_plan=int(np.sum(np.isinf(gaps))),
  )


def measure(
  planner: Callable, instances, cost: cm.CostModel, optimum=None, **kwargs
) -> GapStats:
  """Gaps of ``planner(lengths, N, C, cost, **kwargs)`` (a RoundPlan or None).

  A plan's makespan is its placed ``makespan_ms``.
  """
  if optimum is None:
    optimum = optima(instances, cost)
  gaps = []
  for x, best in zip(instances, optimum, strict=True):
    plan = planner(x.lengths, x.num_devices, x.capacity, cost, **kwargs)
    if plan is None:
      gaps.append(np.inf)
      continue
    gaps.append(plan.makespan_ms / best - 1.0)
  return gap_stats(gaps)
