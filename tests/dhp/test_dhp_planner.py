"""Tests for the DHP planner: BFD, the 2-D DP, leftover ranks, placement."""

import itertools

import numpy as np
import pytest

from dhp import allocation
from dhp import cost_model as cm
from dhp import exhaustive
from dhp import lengths as ln
from dhp import packing
from dhp import placement
from dhp import plan_types as pt
from dhp import planner as pl


def test_min_degrees_hand_computed():
  np.testing.assert_array_equal(
    pt.min_degrees([1, 10, 11, 25, 30], 10, 4), [1, 1, 2, 3, 3]
  )
  np.testing.assert_array_equal(
    pt.min_degrees([1, 10, 11, 25, 30], 10, 4, power_of_two=True),
    [1, 1, 2, 4, 4],
  )


def test_min_degrees_sequence_too_long_raises():
  with pytest.raises(ValueError, match=r'sequence 1 has 45 tokens.*4 ranks'):
    pt.min_degrees([10, 45], 10, 4)


def test_bfd_pack_hand_computed():
  # Sorted: 10 -> bin0 (full); 7 -> bin1 (room 3); 5 -> bin2 (room 5);
  # 3 -> best fit is bin1 (room 3); 2 -> bin2 (room 5 -> 3).
  lengths = np.array([10, 7, 5, 3, 2])
  bins, bin_min = packing.bfd_pack(lengths, pt.min_degrees(lengths, 10, 8), 10)
  np.testing.assert_array_equal(bins, [0, 1, 2, 1, 2])
  np.testing.assert_array_equal(bin_min, [1, 1, 1])


def test_bfd_pack_fills_room_of_long_sequences():
  # A 15-token sequence needs 2 ranks (room 20): the 4 joins it.
  lengths = np.array([15, 9, 4])
  bins, bin_min = packing.bfd_pack(lengths, pt.min_degrees(lengths, 10, 8), 10)
  np.testing.assert_array_equal(bins, [0, 1, 0])
  np.testing.assert_array_equal(bin_min, [2, 1])


def test_allocate_dp_hand_computed():
  d = np.arange(4, dtype=float)
  with np.errstate(divide='ignore'):
    table = np.stack([12.0 / d, 6.0 / d])
  # N=3: (2, 1) gives max(6, 6) = 6; (1, 2) gives 12.
  degrees, makespan = allocation.allocate_dp(table, np.array([1, 1]), 3)
  np.testing.assert_array_equal(degrees, [2, 1])
  assert makespan == 6.0
  degrees, makespan = allocation.allocate_threshold(table, np.array([1, 1]), 3)
  np.testing.assert_array_equal(degrees, [2, 1])
  assert makespan == 6.0


def test_allocate_respects_min_degree_and_allowed():
  d = np.arange(6, dtype=float)
  with np.errstate(divide='ignore'):
    table = np.stack([12.0 / d, 6.0 / d])
  degrees, _ = allocation.allocate_dp(table, np.array([1, 3]), 5)
  assert degrees[1] >= 3 and degrees.sum() <= 5
  allowed = np.array([False, True, True, False, True, False])
  degrees, _ = allocation.allocate_dp(table, np.array([1, 1]), 5, allowed)
  assert set(degrees.tolist()) <= {1, 2, 4}
  assert allocation.allocate_dp(table, np.array([3, 3]), 5) is None
  assert allocation.allocate_threshold(table, np.array([3, 3]), 5) is None


def test_dp_and_threshold_agree_on_random_instances():
  model = cm.flexsp_preset()
  rng = np.random.default_rng(0)
  checked = 0
  for trial in range(60):
    n = int(rng.integers(2, 40))
    lengths = ln.long_tail(int(rng.integers(1, 25)), trial, max_len=16384 * n)
    m = pt.min_degrees(lengths, 16384, n)
    bins, bin_min = packing.bfd_pack(lengths, m, 16384)
    if bin_min.sum() > n:
      continue
    table = model.time_table(lengths, bins, len(bin_min), n)
    a = allocation.allocate_dp(table, bin_min, n)
    b = allocation.allocate_threshold(table, bin_min, n)
    assert b[1] == pytest.approx(a[1], rel=1e-9)
    assert a[0].sum() <= n and b[0].sum() <= n
    checked += 1
  assert checked > 30


def test_dp_is_optimal_by_brute_force():
  model = cm.flexsp_preset()
  lengths = np.array([30000, 9000, 4000])
  table = model.time_table(lengths, np.arange(3), 3, 6)
  best = min(
    max(table[k, d[k]] for k in range(3))
    for d in itertools.product(range(1, 7), repeat=3)
    if sum(d) <= 6
  )
  _, makespan = allocation.allocate_dp(table, np.ones(3, int), 6)
  assert makespan == pytest.approx(best)


def test_leftover_goes_to_critical_group_while_it_helps():
  d = np.arange(6, dtype=float)
  with np.errstate(divide='ignore'):
    table = np.stack([12.0 / d, 1.0 / d])
  np.testing.assert_array_equal(
    allocation.assign_leftover(table, np.array([1, 1]), 5), [4, 1]
  )
  # A group that gets slower with more ranks keeps its degree.
  flat = np.array([[np.inf, 5.0, 6.0, 7.0], [np.inf, 1.0, 1.0, 1.0]])
  np.testing.assert_array_equal(
    allocation.assign_leftover(flat, np.array([1, 1]), 3), [1, 1]
  )


def test_place_groups_keeps_small_groups_inside_nodes():
  offsets = placement.place_groups(np.array([3, 6, 5, 2]), 16, 8)
  # 6 and 2 share a node, 5 and 3 share the other.
  spans = {
    (int(o) // 8, (int(o) + d - 1) // 8)
    for o, d in zip(offsets, [3, 6, 5, 2], strict=True)
  }
  assert all(a == b for a, b in spans)
  ranks = sorted(
    r
    for o, d in zip(offsets, [3, 6, 5, 2], strict=True)
    for r in range(o, o + d)
  )
  assert ranks == list(range(16))


def test_place_groups_large_groups_first_and_fallback():
  np.testing.assert_array_equal(placement.place_groups([8, 12], 24, 8), [12, 0])
  assert not placement.fits_nodes([6, 6, 4], 16, 8)
  offsets = placement.place_groups([6, 6, 4], 16, 8)
  np.testing.assert_array_equal(offsets, [0, 6, 12])  # contiguous fallback


@pytest.mark.parametrize('dist', sorted(ln.GENERATORS))
@pytest.mark.parametrize('num_devices', [8, 24, 64])
def test_plan_batch_invariants(dist, num_devices):
  model = cm.flexsp_preset()
  capacity = 16384
  lengths = ln.sample(dist, 96, 3)
  plan = pl.plan_batch(lengths, num_devices, capacity, model)
  seen = np.concatenate([g.seq_ids for r in plan.rounds for g in r.groups])
  np.testing.assert_array_equal(np.sort(seen), np.arange(len(lengths)))
  for r in plan.rounds:
    used = np.zeros(num_devices, int)
    for g in r.groups:
      assert lengths[g.seq_ids].sum() <= g.degree * capacity  # memory
      used[g.offset : g.offset + g.degree] += 1
      crosses = g.offset // 8 != (g.offset + g.degree - 1) // 8
      assert g.time_ms == pytest.approx(
        model.group_time(lengths[g.seq_ids], g.degree, crosses_node=crosses)
      )
      if g.degree < 8:
        assert not crosses
    assert used.max() <= 1
    assert 0 < r.utilisation <= 1 + 1e-12
    assert r.makespan_ms == pytest.approx(r.estimated_ms)
  assert plan.total_ms == pytest.approx(sum(r.makespan_ms for r in plan.rounds))


def test_plan_round_uses_non_power_of_two_degrees():
  model = cm.flexsp_preset()
  lengths = np.array([45000, 16000, 16000])
  plan = pl.plan_round(lengths, 8, 16384, model)
  assert sum(plan.degrees) <= 8
  # 45000 tokens need 3 ranks; it runs on 5 (not a power of two), the two
  # 16000s share 3 ranks ([1, 2, 5] ties with it): the exact optimum.
  assert sorted(plan.degrees) == [3, 5]
  best = exhaustive.exhaustive_round(lengths, 8, 16384, model).makespan_ms
  assert plan.makespan_ms == pytest.approx(best, rel=1e-12)


def test_paper_mode_is_never_better_than_default():
  model = cm.flexsp_preset()
  for seed in range(5):
    lengths = ln.long_tail(64, seed)
    full = pl.plan_batch(lengths, 32, 16384, model)
    paper = pl.plan_batch(
      lengths, 32, 16384, model, refine=False, pack_scales=(1.0,)
    )
    assert paper.total_ms >= 0.97 * full.total_ms


def test_split_rounds_balances_work():
  model = cm.flexsp_preset()
  lengths = ln.uniform(64, 0)
  parts = pl.split_rounds(lengths, 4, model)
  work = [
    model.a1 * (lengths[p].astype(float) ** 2).sum()
    + model.a2 * lengths[p].sum()
    for p in parts
  ]
  assert max(work) / min(work) < 1.1
  np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(64))


@pytest.mark.parametrize(
  'kwargs,match',
  [
    (dict(lengths=[], num_devices=8), 'non-empty'),
    (dict(lengths=[100, 0], num_devices=8), '> 0'),
    (dict(lengths=[100.5], num_devices=8), 'integers'),
    (dict(lengths=[100, float('nan')], num_devices=8), 'integers'),
    (dict(lengths=[100], num_devices=0), 'num_devices'),
    (dict(lengths=[100], num_devices=8, capacity=0), 'capacity'),
    (dict(lengths=[200000], num_devices=8), 'cannot fit'),
  ],
)
def test_bad_input_raises(kwargs, match):
  kwargs.setdefault('capacity', 16384)
  with pytest.raises(ValueError, match=match):
    pl.plan_batch(cost=cm.flexsp_preset(), **kwargs)


def test_bad_solver_options_raise():
  model = cm.flexsp_preset()
  with pytest.raises(ValueError, match='method'):
    pl.plan_round([100], 2, 100, model, method='milp')
  with pytest.raises(ValueError, match='pack_scales'):
    pl.plan_round([100], 2, 100, model, pack_scales=(-1.0,))
