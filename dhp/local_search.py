"""Local search on a grouping: move, merge and split moves, and LPT passes.

BFD packs by memory only and the allocation can only change degrees, so the
groups themselves need moves. At the current makespan M* every group k
needs ``need_k(M)`` ranks to finish by M (the fewest allowed degrees >= its
memory minimum with T_k(d) <= M); the makespan can drop below M* iff some
regrouping brings sum_k need_k(M* - eps) down to N. Each move changes one or
two groups, so its effect on that sum is computed from those groups' rows
alone, vectorised over all targets:

* **move**: a sequence of the critical group into any other group (which
  may need more ranks to absorb it: the grow-degree move) or into a new
  group of its own;
* **merge**: the critical group with any other group, or two other groups
  (freeing ranks for the critical one);
* **split**: the critical group into its longest sequence and the rest, or
  into LPT halves by work.

The move leaving the most ranks spare is applied and the exact allocation
re-solved (node-aware where nodes matter); it is kept iff the makespan
drops, else the next few are tried. ``rebalance`` then re-assigns every
sequence by LPT to the chosen degrees, kept when it helps.

Work bound per call: at most ``max_moves`` (default 2B + 8) accepted moves;
each scores O((s + K + P) K_w W) table cells (s sequences of the critical
group, K groups, P <= ``MAX_PAIR_GROUPS``^2 / 2 pairs, W the table width)
and runs at most ``TRIES`` exact allocations of O(K W log(K W)).
"""

from __future__ import annotations

import functools

import numpy as np

from dhp import kernels
from dhp import packing
from dhp import plan_types as pt

TRIES = 4  # exact allocations tried per step before stopping
MAX_PAIR_GROUPS = 24  # pair merges among at most this many fastest groups
MAX_MOVERS = 16  # sequences of the critical group tried as movers
SMALL_ROUND = 16  # up to this many sequences: every sequence moves, swaps
_REL = 1e-12


@functools.lru_cache(maxsize=64)
def _pairs(n):
  """All index pairs i < j < n (cached)."""
  return np.triu_indices(n, 1)


def _need(problem, rows, mins, m):
  """Fewest usable ranks per row with T <= m; N + 1 when none. int [R]."""
  rows = np.asarray(rows, np.float64)
  return kernels.fewest_ranks(
    rows,
    np.asarray(mins, np.int64),
    problem.usable(rows.shape[1]),
    float(m),
    int(problem.num_devices),
  )


def _mins(problem, tokens, seq_min):
  """Group minimum degree from its tokens and largest m_i. int [R]."""
  need = np.maximum(-(-np.asarray(tokens) // int(problem.capacity)), seq_min)
  return pt.round_up_pow2(np.maximum(need, 1), problem.power_of_two)


def _scored_moves(problem: pt.RoundProblem, sol: pt.Grouping):
  """Candidate regroupings with the total ranks they need at M* - eps.

  Returns:
    list of (total ranks, new bins [B]) with total <= N, best first.
  """
  with np.errstate(invalid='ignore'):  # column 0: inf - inf, masked
    return _scored_moves_inner(problem, sol)


def _scored_moves_inner(problem, sol):
  bins, bin_min, table, degrees, makespan = sol
  lengths, per, beta = problem.lengths, problem.per, problem.cost.beta
  n, k = problem.num_devices, len(bin_min)
  m = makespan * (1 - _REL)
  tokens = np.bincount(bins, lengths, minlength=k).astype(np.int64)
  seq_min = np.zeros(k, np.int64)
  np.maximum.at(seq_min, bins, problem.min_deg)
  need = _need(problem, table, bin_min, m)
  # excl[i]: the largest m_j in i's group without i (0 if i is alone).
  sizes = np.bincount(bins, minlength=k)
  is_top = problem.min_deg == seq_min[bins]
  top_count = np.bincount(bins, is_top, minlength=k)
  second = np.zeros(k, np.int64)
  np.maximum.at(second, bins, np.where(is_top, 0, problem.min_deg))
  excl = np.where(is_top & (top_count[bins] == 1), second[bins], seq_min[bins])
  total = int(need.sum())
  times = table[np.arange(k), degrees]
  g = int(np.argmax(times))
  ids = np.nonzero(bins == g)[0]
  ids = ids[np.argsort(-per[ids, degrees[g]], kind='stable')]
  out = []

  def add(totals, make):
    for j in np.nonzero(totals <= n)[0].tolist():
      out.append((int(totals[j]), make(j)))

  others = np.delete(np.arange(k), g)
  base = total - int(need[g])
  # Moves: a sequence into another group h, or into a new group. Movers:
  # the critical group's sequences; in small rounds every sequence.
  movers = ids[:MAX_MOVERS]
  if len(lengths) <= SMALL_ROUND:
    movers = np.concatenate([movers, np.nonzero(bins != g)[0]])
  src = bins[movers]  # [S]
  rest_need = _need(
    problem,
    table[src] - per[movers],
    _mins(problem, tokens[src] - lengths[movers], excl[movers]),
    m,
  )
  rest_need = np.where(sizes[src] > 1, rest_need, 0)
  # Destination rows: every group (its own masked out) and a new group.
  rows = np.concatenate(
    [
      table[None, :, :] + per[movers][:, None, :],
      (per[movers] + beta)[:, None, :],
    ],
    axis=1,
  )  # [S, K + 1, W + 1]
  dest_tokens = np.append(tokens, 0)[None, :] + lengths[movers][:, None]
  dest_min = np.maximum(
    np.append(seq_min, 0)[None, :], problem.min_deg[movers][:, None]
  )
  new_need = _need(
    problem,
    rows.reshape(-1, rows.shape[2]),
    _mins(problem, dest_tokens.reshape(-1), dest_min.reshape(-1)),
    m,
  ).reshape(len(movers), k + 1)
  old_need = np.append(need, 0)
  totals = (total - need[src] + rest_need)[:, None] + new_need - old_need
  totals[np.arange(len(movers)), src] = n + 1  # not a move
  flat = totals.reshape(-1)

  def make(j):
    new = bins.copy()
    new[movers[j // (k + 1)]] = j % (k + 1)
    return new

  add(flat, make)
  # Swaps: a sequence of g with one of another group (small rounds).
  outside = np.nonzero(bins != g)[0]
  if len(lengths) <= SMALL_ROUND and len(outside):
    ii = np.repeat(ids[:MAX_MOVERS], len(outside))
    jj = np.tile(outside, min(len(ids), MAX_MOVERS))
    h = bins[jj]
    rows_g = table[g][None] - per[ii] + per[jj]  # [P, W + 1]
    rows_h = table[h] - per[jj] + per[ii]
    mg = np.maximum(excl[ii], problem.min_deg[jj])
    mh = np.maximum(excl[jj], problem.min_deg[ii])
    tok_g = tokens[g] - lengths[ii] + lengths[jj]
    tok_h = tokens[h] - lengths[jj] + lengths[ii]
    totals = (
      total
      - int(need[g])
      - need[h]
      + _need(problem, rows_g, _mins(problem, tok_g, mg), m)
      + _need(problem, rows_h, _mins(problem, tok_h, mh), m)
    )

    def swap(j):
      new = bins.copy()
      new[ii[j]], new[jj[j]] = bins[jj[j]], bins[ii[j]]
      return new

    add(totals, swap)
  # Merges: g with any other group, and pairs of other groups.
  if len(others):
    rows = table[others] + table[g] - beta
    mins = _mins(
      problem,
      tokens[others] + tokens[g],
      np.maximum(seq_min[others], seq_min[g]),
    )
    totals = base - need[others] + _need(problem, rows, mins, m)

    def merge_g(j):
      new = bins.copy()
      new[new == g] = others[j]
      return new

    add(totals, merge_g)
  pool = others[np.argsort(times[others], kind='stable')][:MAX_PAIR_GROUPS]
  if len(pool) >= 2:
    a, b = _pairs(len(pool))
    a, b = pool[a], pool[b]
    rows = table[a] + table[b] - beta
    mins = _mins(
      problem, tokens[a] + tokens[b], np.maximum(seq_min[a], seq_min[b])
    )
    totals = total - need[a] - need[b] + _need(problem, rows, mins, m)

    def merge_pair(j):
      new = bins.copy()
      new[new == b[j]] = a[j]
      return new

    add(totals, merge_pair)
  # Splits of g: LPT halves by work, and every split of its sequences
  # sorted by length into the j shortest and the rest (the longest alone is
  # one of them; under tight memory these are the splits that fit).
  if len(ids) >= 2:
    work = per[ids, degrees[g]]
    splits = []
    halves, loads = [[], []], [0.0, 0.0]
    for i, w in zip(ids.tolist(), work.tolist(), strict=True):
      h = 0 if loads[0] <= loads[1] else 1
      halves[h].append(i)
      loads[h] += w
    if halves[1] and len(halves[0]) > 1:
      splits.append(np.array(halves[1]))
    rank = np.empty(len(ids), np.int64)  # position of ids[x] by length
    rank[np.argsort(lengths[ids], kind='stable')] = np.arange(len(ids))
    step = max(1, (len(ids) - 1) // MAX_MOVERS)
    cuts = np.arange(1, len(ids), step)
    part_a = rank[None, :] < cuts[:, None]  # the j shortest
    if splits:
      part_a = np.concatenate([np.isin(ids, splits[0])[None], part_a])
    rows_a = part_a.astype(float) @ per[ids] + beta
    rows_b = (~part_a).astype(float) @ per[ids] + beta
    lens, mdeg = lengths[ids], problem.min_deg[ids]
    mins_a = _mins(
      problem, part_a @ lens, np.where(part_a, mdeg, 0).max(axis=1)
    )
    mins_b = _mins(
      problem, (~part_a) @ lens, np.where(~part_a, mdeg, 0).max(axis=1)
    )
    totals = (
      base
      + _need(problem, rows_a, mins_a, m)
      + _need(problem, rows_b, mins_b, m)
    )

    def split(j):
      new = bins.copy()
      new[ids[part_a[j]]] = k
      return new

    add(totals, split)
  out.sort(key=lambda x: x[0])
  return out


def move_search(
  problem: pt.RoundProblem, sol: pt.Grouping, max_moves=None
) -> pt.Grouping:
  """Applies improving move / merge / split moves until none helps.

  Args:
    problem: the round.
    sol: the current grouping.
    max_moves: at most this many accepted moves (default 2B + 8).

  Returns:
    A grouping whose makespan is <= ``sol``'s.
  """
  max_moves = 2 * len(problem.lengths) + 8 if max_moves is None else max_moves
  tight = problem.lower_bound() * (1 + _REL)
  for _ in range(max_moves):
    if sol.makespan <= tight:
      break
    moved = False
    for _, new_bins in _scored_moves(problem, sol)[:TRIES]:
      new = packing.grouping_from_bins(problem, new_bins)
      if new is not None and new.makespan < sol.makespan * (1 - _REL):
        sol, moved = new, True
        break
    if not moved:
      break
  return sol


def rebalance(problem: pt.RoundProblem, degrees) -> pt.Grouping | None:
  """Keeps the group degrees, re-assigns sequences by LPT, re-solves degrees.

  Sequences (longest work first) go to the group that would finish
  earliest among those with degree >= m_i and token room; BFD balances
  memory only, this balances time. The allocation is then solved again for
  the new groups.

  Args:
    problem: the round.
    degrees: [K] degrees of the current groups.

  Returns:
    The new grouping, or None if some sequence finds no group.
  """
  lengths, m, capacity = problem.lengths, problem.min_deg, problem.capacity
  degrees = np.asarray(degrees, np.int64)
  per = problem.per[:, degrees]  # [B, K]
  order = np.argsort(-per.min(axis=1), kind='stable')
  ok, new_bins = kernels.lpt(
    per,
    order,
    degrees,
    m,
    lengths,
    float(problem.cost.beta),
    float(capacity),
  )
  if not ok:
    return None
  return packing.grouping_from_bins(problem, new_bins)


def improve(problem: pt.RoundProblem, sol: pt.Grouping, rounds=2):
  """``move_search``, then an LPT ``rebalance``; repeated while it helps.

  Returns:
    A grouping whose makespan is <= ``sol``'s.
  """
  for _ in range(rounds):
    sol = move_search(problem, sol)
    new = rebalance(problem, sol.degrees)
    if new is None or new.makespan >= sol.makespan * (1 - _REL):
      break
    sol = new
  return sol
