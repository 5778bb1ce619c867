"""Baselines on the same cost model and round splitter as DHP.

Every ``*_round`` function has the signature of ``planner.plan_round``
(lengths, num_devices, capacity, cost, ...) -> RoundPlan | None, so
``planner.plan_batch`` splits a global batch for each of them alike.

* ``static_round``: Megatron-LM static ring CP (or DeepSpeed Ulysses with
  comm='ulysses'): N / c groups of c ranks, sequences assigned by LPT.
* ``megatron_balanced_round``: the structure of Megatron-LM's
  ``BalancedCPScheduler``: power-of-two groups opened greedily, then group
  sizes doubled until no rank is idle.
* ``flexsp_round``: FlexSP-style power-of-two degrees (BFD + exact
  allocation restricted to 2^k).
* ``exact_round``: the optimum over every partition of the sequences into
  groups and every integer degree (subset DP, small instances only).
"""

from __future__ import annotations

import math

import numpy as np

from dhp import cost_model as cm
from dhp import placement
from dhp import plan_types as pt
from dhp import planner as pl

MAX_EXACT_SEQUENCES = 12


def check_static_degree(num_devices, degree, comm=cm.RING, num_heads=None):
  """Raises unless ``degree`` is a valid static CP/SP degree."""
  if int(degree) != degree or degree < 1 or num_devices % degree:
    raise ValueError(
      f'static degree {degree!r} must be an int >= 1 dividing '
      f'num_devices={num_devices}.'
    )
  if comm == cm.ULYSSES:
    if num_heads is None:
      raise ValueError('Ulysses needs num_heads (its degree divides it).')
    if num_heads % degree:
      raise ValueError(
        f'Ulysses degree {degree} must divide num_heads={num_heads}.'
      )


def static_round(
  lengths, num_devices, capacity, cost: cm.CostModel, degree=1, comm=cm.RING
):
  """Static CP: N / degree groups of ``degree`` ranks, LPT by time.

  Returns:
    RoundPlan, or None when a sequence cannot fit or the round's tokens do
    not fit the fixed groups.
  """
  lengths = pt.check_inputs(lengths, num_devices, capacity)
  check_static_degree(num_devices, degree)
  if np.any(lengths > degree * capacity):
    return None
  num_groups = num_devices // degree
  times = cost.sequence_times(lengths, degree, comm)
  loads = np.zeros(num_groups)
  tokens = np.zeros(num_groups)
  members: list[list[int]] = [[] for _ in range(num_groups)]
  room = degree * capacity
  for i in np.argsort(-times, kind='stable').tolist():
    fits = tokens + lengths[i] <= room
    if not fits.any():
      return None
    g = int(np.argmin(np.where(fits, loads, np.inf)))
    members[g].append(i)
    loads[g] += times[i]
    tokens[g] += lengths[i]
  groups = [np.array(m, np.int64) for m in members if m]
  degrees = np.full(len(groups), degree)
  est = max(cost.group_time(lengths[g], degree, comm) for g in groups)
  return placement.finalize_round(
    lengths,
    groups,
    degrees,
    cost,
    num_devices=num_devices,
    comm=comm,
    estimated_ms=est,
  )


def megatron_balanced_round(lengths, num_devices, capacity, cost: cm.CostModel):
  """Megatron-LM ``BalancedCPScheduler``-style power-of-two greedy.

  gpus_needed(L) = 2^ceil(log2(ceil(L / C))). Longest work first, each
  sequence opens a new group while ranks are free, else joins the
  least-loaded group of at least its size that has room. Then
  ``fill_empty_gpus``: the most-loaded group that fits in the idle ranks
  doubles its size, until none fits. Load is the cost model's time.

  Returns:
    RoundPlan, or None if the round does not fit.
  """
  lengths = pt.check_inputs(lengths, num_devices, capacity)
  need = pt.min_degrees(lengths, capacity, num_devices, power_of_two=True)
  per = cost.degree_table(lengths, num_devices)  # [B, N], degree d at d - 1
  sizes = np.zeros(len(lengths), np.int64)  # at most one group per sequence
  loads = np.zeros(len(lengths))
  tokens = np.zeros(len(lengths))
  members: list[list[int]] = []
  free = num_devices
  work = cost.a1 * lengths.astype(np.float64) ** 2 + cost.a2 * lengths
  for i in np.argsort(-work, kind='stable').tolist():
    p, length = int(need[i]), int(lengths[i])
    k = len(members)
    if free >= p:
      sizes[k], loads[k], tokens[k] = p, per[i, p - 1], length
      members.append([i])
      free -= p
      continue
    ok = (sizes[:k] >= p) & (tokens[:k] + length <= sizes[:k] * capacity)
    if not ok.any():
      return None
    g = int(np.argmin(np.where(ok, loads[:k], np.inf)))
    members[g].append(i)
    tokens[g] += length
    loads[g] += per[i, sizes[g] - 1]
  k = len(members)
  sizes, loads = sizes[:k], loads[:k]
  while True:  # fill_empty_gpus: double the most loaded group that fits
    fits = sizes <= free
    if not fits.any():
      break
    g = int(np.argmax(np.where(fits, loads, -np.inf)))
    free -= int(sizes[g])
    sizes[g] *= 2
    loads[g] = per[members[g], sizes[g] - 1].sum()
  groups = [np.array(m, np.int64) for m in members]
  est = max(
    cost.group_time(lengths[m], s) for m, s in zip(groups, sizes, strict=True)
  )
  return placement.finalize_round(
    lengths,
    groups,
    np.array(sizes),
    cost,
    num_devices=num_devices,
    comm=cm.RING,
    estimated_ms=est,
  )


def flexsp_round(lengths, num_devices, capacity, cost: cm.CostModel):
  """FlexSP-style: BFD atomic groups (at DHP's four bin scales), optimal
  power-of-two degrees; no local search (FlexSP solves a MILP instead)."""
  return pl.plan_round(
    lengths, num_devices, capacity, cost, power_of_two=True, refine=False
  )


def exact_round(
  lengths, num_devices, capacity, cost: cm.CostModel, allowed=None, comm=cm.RING
):
  """Optimal makespan over all partitions and integer degrees.

  Subset DP: f[S][j] = min over A subset of S holding S's lowest sequence,
  d in [ceil(sum L_A / C), j], of max(T(A, d), f[S - A][j - d]), with
  f[{}][0] = 0. Times use the degree-based bandwidth (the planner's model).

  Args:
    lengths: [B] with B <= MAX_EXACT_SEQUENCES.
    num_devices: N.
    capacity: tokens per rank.
    cost: the cost model.
    allowed: optional bool [N + 1] of usable degrees.
    comm: 'ring' or 'ulysses'.

  Returns:
    RoundPlan (its ``estimated_ms`` is the optimum), or None if infeasible.
  """
  lengths = pt.check_inputs(lengths, num_devices, capacity)
  b = len(lengths)
  if b > MAX_EXACT_SEQUENCES:
    raise ValueError(
      f'exact_round handles <= {MAX_EXACT_SEQUENCES} sequences, got {b}.'
    )
  n1 = num_devices + 1
  degrees = np.arange(n1)
  per = np.zeros((b, n1))
  per[:, 1:] = cost.sequence_times(lengths[:, None], degrees[None, 1:], comm)
  full = 1 << b
  t = np.zeros((full, n1))
  tok = np.zeros(full, np.int64)
  for s in range(1, full):
    low = (s & -s).bit_length() - 1
    t[s] = t[s & (s - 1)] + per[low]
    tok[s] = tok[s & (s - 1)] + lengths[low]
  t += cost.beta
  ok = np.ones(n1, bool) if allowed is None else np.asarray(allowed, bool)
  min_d = -(-tok // int(capacity))
  t[(degrees[None, :] < min_d[:, None]) | ~ok[None, :]] = np.inf
  t[:, 0] = np.inf
  j = np.arange(n1)
  idx = (n1 - 1) + j[:, None] - j[None, :]  # [j, d] -> padded j - d
  f = np.full((full, 2 * n1 - 1), np.inf)  # f[S, n1 - 1 + j]
  f[0, n1 - 1] = 0.0
  arg_a = np.zeros((full, n1), np.int64)
  arg_d = np.zeros((full, n1), np.int64)
  for s in range(1, full):
    low = s & -s
    rest = s ^ low
    subs = [rest]
    sub = rest
    while sub:
      sub = (sub - 1) & rest
      subs.append(sub)
    a = np.array(subs, np.int64) | low
    cand = np.maximum(t[a][:, None, :], f[s ^ a][:, idx])  # [nA, j, d]
    flat = cand.transpose(1, 0, 2).reshape(n1, -1)
    best = flat.argmin(axis=1)
    f[s, n1 - 1 :] = flat[j, best]
    arg_a[s] = a[best // n1]
    arg_d[s] = best % n1
  end = int(np.argmin(f[full - 1, n1 - 1 :]))
  optimum = float(f[full - 1, n1 - 1 + end])
  if not math.isfinite(optimum):
    return None
  groups, degs = [], []
  s, jj = full - 1, end
  while s:
    a, d = int(arg_a[s, jj]), int(arg_d[s, jj])
    groups.append(np.array([i for i in range(b) if a >> i & 1], np.int64))
    degs.append(d)
    s, jj = s ^ a, jj - d
  return placement.finalize_round(
    lengths,
    groups,
    np.array(degs),
    cost,
    num_devices=num_devices,
    comm=comm,
    estimated_ms=optimum,
  )


def power_of_two_mask(num_devices):
  """bool [N + 1]: True at 1, 2, 4, ... <= N."""
  allowed = np.zeros(num_devices + 1, bool)
  allowed[2 ** np.arange(int(math.log2(num_devices)) + 1)] = True
  return allowed


def plan_static(
  lengths,
  num_devices,
  capacity,
  cost: cm.CostModel,
  degree,
  comm=cm.RING,
  num_heads=None,
):
  """A whole batch under one static degree, or None if a sequence needs
  more than ``degree`` ranks (the strategy cannot run this batch)."""
  check_static_degree(num_devices, degree, comm, num_heads)
  lengths = pt.check_inputs(lengths, num_devices, capacity)
  if np.any(lengths > degree * capacity):
    return None
  return pl.plan_batch(
    lengths, num_devices, capacity, cost, static_round, degree=degree, comm=comm
  )


def best_static(
  lengths,
  num_devices,
  capacity,
  cost: cm.CostModel,
  comm=cm.RING,
  num_heads=None,
):
  """The best tuned static strategy over power-of-two degrees.

  For Ulysses only degrees dividing ``num_heads`` are tried.

  Returns:
    (degree, BatchPlan, {degree: total_ms or None}).
  """
  results = {}
  best = None
  c = 1
  while c <= num_devices:
    if num_devices % c == 0 and (comm == cm.RING or num_heads % c == 0):
      plan = plan_static(
        lengths, num_devices, capacity, cost, c, comm, num_heads
      )
      results[c] = None if plan is None else plan.total_ms
      if plan is not None and (
        best is None or plan.total_ms < best[1].total_ms
      ):
        best = (c, plan)
    c *= 2
  if best is None:
    raise ValueError(
      f'no static {comm} degree fits this batch on '
      f'{num_devices} ranks (tried {sorted(results)}).'
    )
  return best[0], best[1], results
