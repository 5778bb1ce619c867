"""Degree allocation: the fewest-makespan degrees for fixed atomic groups.

* ``allocate_dp``: the paper's 2-D DP, D[k][j] = min_{d in [m_k, j]}
  max(D[k-1][j-d], T_k(d)), D[0][0] = 0 only, any integer degree;
  backtracking gives d_k. O(K N^2), vectorised over (j, d) with NumPy.
* ``allocate_threshold``: the same optimum in O(K N log) by bisection on the
  makespan (each group independently takes the fewest ranks that meet it);
  optionally node-aware.
* ``allocate`` picks one by problem size; ``allocate_for`` applies it to a
  ``RoundProblem``.
* ``assign_leftover``: spare ranks go to the critical-path group while that
  shortens it.
"""

from __future__ import annotations

import numpy as np

from dhp import placement
from dhp import plan_types as pt

_DP_MAX_CELLS = 100_000
_EXACT_SEARCH_CELLS = 65_536


def _masked_table(table, min_cp, allowed):
  t = np.array(table, dtype=np.float64)
  d = np.arange(t.shape[1])
  t[d[None, :] < np.asarray(min_cp)[:, None]] = np.inf
  if allowed is not None:
    t[:, ~np.asarray(allowed, bool)[: t.shape[1]]] = np.inf
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
  node can also be packed into nodes without straddling one
  (``placement.fits_nodes``), so the table's intra-node bandwidth holds for
  them after placement.

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
    return devices_per_node is None or placement.fits_nodes(
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
    table = np.asarray(table)
    if table.shape[1] < num_devices + 1:  # degrees past the width: unusable
      pad = np.full((len(table), num_devices + 1 - table.shape[1]), np.inf)
      table = np.concatenate([table, pad], axis=1)
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


def allocate_for(problem: pt.RoundProblem, table, bin_min):
  """``allocate`` with the round's N, allowed degrees, solver and nodes.

  Returns:
    (degrees [K], makespan) or None.
  """
  return allocate(
    table,
    bin_min,
    problem.num_devices,
    problem.allowed,
    problem.method,
    problem.cost.devices_per_node,
  )


def assign_leftover(
  table, degrees, num_devices, allowed=None, devices_per_node=None
):
  """Gives spare ranks to the critical-path group while it gets faster.

  With ``devices_per_node``, a rank is given only if the groups still pack
  into nodes (``placement.fits_nodes``).

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
    if devices_per_node is not None and not placement.fits_nodes(
      grown, num_devices, devices_per_node
    ):
      return degrees
    degrees = grown
