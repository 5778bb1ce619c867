"""Tests for dhp.baselines: static CP/Ulysses, Megatron greedy, exact."""

import itertools

import numpy as np
import pytest

from dhp import baselines as bl
from dhp import cost_model as cm
from dhp import lengths as ln
from dhp import planner as pl


def _set_partitions(items):
  if not items:
    yield []
    return
  first, rest = items[0], items[1:]
  for part in _set_partitions(rest):
    for i in range(len(part)):
      yield part[:i] + [[first] + part[i]] + part[i + 1 :]
    yield [[first]] + part


def _brute_force(lengths, n, capacity, model):
  best = np.inf
  for part in _set_partitions(list(range(len(lengths)))):
    mins = [-(-int(lengths[p].sum()) // capacity) for p in part]
    for degs in itertools.product(range(1, n + 1), repeat=len(part)):
      if sum(degs) > n or any(d < m for d, m in zip(degs, mins, strict=True)):
        continue
      best = min(
        best,
        max(
          model.group_time(lengths[p], d)
          for p, d in zip(part, degs, strict=True)
        ),
      )
  return best


@pytest.mark.parametrize('seed', range(4))
def test_exact_round_matches_brute_force(seed):
  model = cm.flexsp_preset()
  lengths = ln.long_tail(4, seed, max_len=2 * 16384)
  plan = bl.exact_round(lengths, 4, 16384, model)
  assert plan.estimated_ms == pytest.approx(
    _brute_force(lengths, 4, 16384, model), rel=1e-9
  )
  seen = np.sort(np.concatenate([g.seq_ids for g in plan.groups]))
  np.testing.assert_array_equal(seen, np.arange(4))


def test_dhp_is_never_better_than_exact_and_close_on_average():
  model = cm.flexsp_preset()
  rng = np.random.default_rng(0)
  gaps = []
  for trial in range(12):
    n = int(rng.integers(2, 9))
    lengths = ln.long_tail(int(rng.integers(2, 7)), trial, max_len=16384 * n)
    exact = bl.exact_round(lengths, n, 16384, model)
    dhp = pl.plan_round(lengths, n, 16384, model)
    if dhp is None:
      continue
    assert dhp.estimated_ms >= exact.estimated_ms * (1 - 1e-9)
    gaps.append(dhp.estimated_ms / exact.estimated_ms - 1)
  assert len(gaps) >= 8
  assert np.mean(gaps) < 0.05


def test_exact_round_rejects_large_instances():
  with pytest.raises(ValueError, match='<= 12'):
    bl.exact_round(np.full(13, 100), 8, 16384, cm.flexsp_preset())


def test_static_round_uses_equal_groups_and_lpt():
  model = cm.flexsp_preset()
  lengths = np.array([9000, 8000, 4000, 3000, 1000, 1000])
  plan = bl.static_round(lengths, 4, 16384, model, degree=2)
  assert plan.degrees == [2, 2]
  loads = sorted(lengths[g.seq_ids].sum() for g in plan.groups)
  assert loads == [13000, 13000]


def test_static_round_infeasible_when_sequence_exceeds_degree():
  model = cm.flexsp_preset()
  assert bl.static_round([40000], 8, 16384, model, degree=2) is None
  assert bl.plan_static([40000], 8, 16384, model, 2) is None


def test_static_degree_validation():
  model = cm.flexsp_preset()
  with pytest.raises(ValueError, match='dividing'):
    bl.static_round([100], 8, 16384, model, degree=3)
  with pytest.raises(ValueError, match='num_heads=36'):
    bl.plan_static([100], 8, 16384, model, 8, 'ulysses', num_heads=32 + 4)
  with pytest.raises(ValueError, match='divide num_heads'):
    bl.check_static_degree(6, 6, 'ulysses', num_heads=32)


def test_best_static_picks_minimum():
  model = cm.flexsp_preset()
  lengths = ln.long_tail(64, 1)
  degree, plan, results = bl.best_static(lengths, 16, 16384, model)
  finite = {c: t for c, t in results.items() if t is not None}
  assert plan.total_ms == min(finite.values())
  assert results[degree] == plan.total_ms
  assert set(results) == {1, 2, 4, 8, 16}


def test_megatron_balanced_uses_powers_of_two_and_fills_ranks():
  model = cm.flexsp_preset()
  lengths = ln.bimodal(48, 2)
  plan = pl.plan_batch(lengths, 16, 16384, model, bl.megatron_balanced_round)
  for r in plan.rounds:
    assert all(d & (d - 1) == 0 for d in r.degrees)
    for g in r.groups:
      assert lengths[g.seq_ids].sum() <= g.degree * 16384
    assert sum(r.degrees) <= 16


def test_flexsp_round_power_of_two():
  model = cm.flexsp_preset()
  lengths = np.array([45000, 16000, 16000])
  plan = bl.flexsp_round(lengths, 8, 16384, model)
  assert all(d & (d - 1) == 0 for d in plan.degrees)
  dhp = pl.plan_round(lengths, 8, 16384, model)
  assert dhp.makespan_ms < plan.makespan_ms


def test_power_of_two_mask():
  np.testing.assert_array_equal(
    np.nonzero(bl.power_of_two_mask(12))[0], [1, 2, 4, 8]
  )
