"""Compiled inner loops of the planner's greedy passes (numba).

Each pass visits the sequences one at a time and makes a choice that
depends on every earlier one, so it cannot be vectorised over sequences;
in NumPy each step costs a dozen array calls of a few microseconds on a
handful of groups. These kernels run the same loops compiled, with the
same order, comparisons and tie-breaking as the plain-Python versions
(``<kernel>.py_func`` runs the uncompiled source, and the tests check both
give the same result). They take and return plain arrays; the callers in
``packing``, ``local_search`` and ``planner`` build them from the round.

The first call in a fresh environment compiles (about a second per kernel);
``cache=True`` keeps the machine code next to this file for later
processes.
"""

from __future__ import annotations

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True)


@_jit
def bfd(lengths, min_deg, order, capacity):
  """Best-Fit Decreasing: each sequence into the open bin with the least
  room that holds it, else a new bin of ``min_deg[i] * capacity``.

  Args:
    lengths: int64 [B] tokens.
    min_deg: int64 [B] bin size (ranks) a sequence opens.
    order: int64 [B] the visiting order (decreasing length).
    capacity: tokens per rank.

  Returns:
    (bins int64 [B], bin_min int64 [K]).
  """
  b = len(lengths)
  bins = np.empty(b, np.int64)
  bin_min = np.empty(b, np.int64)
  # Open bins sorted by (room, id): the smallest room >= L is the best fit.
  room = np.empty(b, np.int64)
  ids = np.empty(b, np.int64)
  count = 0
  k = 0
  for i in order:
    length = lengths[i]
    pos = 0
    while pos < count and room[pos] < length:
      pos += 1
    if pos < count:
      left, bin_id = room[pos] - length, ids[pos]
      for j in range(pos, count - 1):  # pop
        room[j] = room[j + 1]
        ids[j] = ids[j + 1]
      count -= 1
    else:
      bin_id = k
      bin_min[k] = min_deg[i]
      left = min_deg[i] * capacity - length
      k += 1
    at = count  # insert after every (room, id) below (left, bin_id)
    while at > 0 and (
      room[at - 1] > left or (room[at - 1] == left and ids[at - 1] > bin_id)
    ):
      room[at] = room[at - 1]
      ids[at] = ids[at - 1]
      at -= 1
    room[at] = left
    ids[at] = bin_id
    count += 1
    bins[i] = bin_id
  return bins, bin_min[:k].copy()


@_jit
def threshold(per, lengths, min_deg, order, usable, target, beta, capacity, n):
  """``packing.threshold_pack``'s pass (see there for the rule).

  Args:
    per: float64 [B, W + 1] per-sequence times (column 0 +inf).
    lengths: int64 [B].
    min_deg: int64 [B].
    order: int64 [B] decreasing length.
    usable: bool [W + 1] allowed degrees.
    target: makespan to meet (ms).
    beta: per-group time (ms).
    capacity: tokens per rank (int).
    n: ranks.

  Returns:
    (ok, bins int64 [B]); ``ok`` is False when the ranks do not suffice or
    a sequence meets ``target`` on no degree.
  """
  b, cols = per.shape
  rows = np.empty((b, cols))
  degs = np.zeros(b, np.int64)
  loads = np.zeros(b)
  room = np.zeros(b, np.int64)
  bins = np.full(b, -1, np.int64)
  used = 0
  k_open = 0
  for i in order:
    li, mi = lengths[i], min_deg[i]
    # Join the fullest group that finishes by the target with room.
    best_k, best_t = -1, -np.inf
    for k in range(k_open):
      d = degs[k]
      t = loads[k] + per[i, d]
      if t <= target and room[k] >= li and d >= mi and t > best_t:
        best_k, best_t = k, t
    if best_k >= 0:
      for c in range(cols):
        rows[best_k, c] += per[i, c]
      loads[best_k] = best_t
      room[best_k] -= li
      bins[i] = best_k
      continue
    # Alone: the fewest usable ranks that hold it and meet the target.
    alone = -1
    if usable[mi] and per[i, mi] + beta <= target and li <= mi * capacity:
      alone = mi
    else:
      for d in range(max(mi, -(-li // capacity)), cols):
        if usable[d] and per[i, d] + beta <= target:
          alone = d
          break
    # Grow: an open group's degree raised to absorb it.
    grow_k, grow_d = -1, -1
    if k_open > 0 and (alone < 0 or alone > 1):
      best_extra, best_first = n + 1, -1
      for k in range(k_open):
        tok = degs[k] * capacity - room[k] + li
        floor = max(-(-tok // capacity), mi)
        for d in range(max(floor, 0), cols):
          if usable[d] and rows[k, d] + per[i, d] <= target:
            if d - degs[k] < best_extra:
              best_extra, best_first, grow_k = d - degs[k], d, k
            break
      if grow_k >= 0 and (alone < 0 or best_extra < alone):
        grow_d = best_first
      else:
        grow_k = -1
    if grow_k >= 0:
      k = grow_k
      used += grow_d - degs[k]
      for c in range(cols):
        rows[k, c] += per[i, c]
      room[k] += (grow_d - degs[k]) * capacity - li
      degs[k] = grow_d
      loads[k] = rows[k, grow_d]
    elif alone >= 0:
      k = k_open
      k_open += 1
      for c in range(cols):
        rows[k, c] = per[i, c] + beta
      degs[k] = alone
      loads[k] = rows[k, alone]
      room[k] = alone * capacity - li
      used += alone
    else:
      return False, bins
    bins[i] = k
    if used > n:
      return False, bins
  return True, bins


@_jit
def lpt(per_k, order, degrees, min_deg, lengths, beta, capacity):
  """Each sequence (in ``order``) to the group that would finish earliest
  among those with degree >= m_i and token room.

  Args:
    per_k: float64 [B, K] each sequence's time at each group's degree.
    order: int64 [B].
    degrees: int64 [K].
    min_deg: int64 [B].
    lengths: int64 [B].
    beta: per-group time (ms), every group's starting load.
    capacity: tokens per rank.

  Returns:
    (ok, bins int64 [B]); ``ok`` is False when a sequence finds no group.
  """
  k = len(degrees)
  load = np.full(k, beta)
  free = degrees * float(capacity)
  bins = np.full(len(lengths), -1, np.int64)
  for i in order:
    best, best_t = -1, np.inf
    for g in range(k):
      t = load[g] + per_k[i, g]
      if t < best_t and degrees[g] >= min_deg[i] and free[g] >= lengths[i]:
        best, best_t = g, t
    if best < 0:
      return False, bins
    bins[i] = best
    load[best] = best_t
    free[best] -= lengths[i]
  return True, bins


@_jit
def lpt_rounds(work, order, num_rounds):
  """LPT of items (in ``order``) into the least-loaded of ``num_rounds``
  rounds, ties to the lower round. int64 [B] round of each item."""
  load = np.zeros(num_rounds)
  out = np.empty(len(work), np.int64)
  for i in order:
    r = 0
    for j in range(1, num_rounds):
      if load[j] < load[r]:
        r = j
    out[i] = r
    load[r] += work[i]
  return out


@_jit
def fewest_ranks(rows, mins, usable, m, n):
  """Per row, the first degree d >= mins[r] that ``usable`` allows with
  rows[r, d] <= m; n + 1 when there is none.

  Args:
    rows: float64 [R, W + 1] group times by degree.
    mins: int64 [R] memory minimum degree of each row.
    usable: bool [W + 1].
    m: the makespan to meet.
    n: ranks.

  Returns:
    int64 [R].
  """
  r, cols = rows.shape
  out = np.full(r, n + 1, np.int64)
  for j in range(r):
    for d in range(max(mins[j], 0), cols):
      if usable[d] and rows[j, d] <= m:
        out[j] = d
        break
  return out
