"""The planner's search against the exhaustive oracle, static plans and the
one-group plan; the oracle against ``baselines.exact_round`` and by hand."""

import numpy as np
import pytest

from dhp import baselines as bl
from dhp import cost_model as cm
from dhp import exhaustive
from dhp import gap_sweep
from dhp import lengths as ln
from dhp import placement
from dhp import plan_types as pt
from dhp import planner as pl

LINEAR = cm.CostModel(a1=0.0, a2=1.0, comm_factor=0.0)
ONE_NODE = gap_sweep.single_node(cm.flexsp_preset())


def test_exhaustive_hand_computed():
  # T = sum L / d, N = 3. {6} on 2 ranks (3) leaves one rank for 3 + 3 (6);
  # {6, 3} on 2 (4.5) and {3} on 1 (3): 4.5; all on 3 ranks: 12 / 3 = 4.
  sol = exhaustive.exhaustive_round([6, 3, 3], 3, 100, LINEAR)
  assert sol.makespan_ms == 4.0  # 12 / 3 is exact in floating point
  assert sol.degrees == (3,)
  # Memory: C = 3 holds 9 tokens on 3 ranks, fewer than 12: no plan.
  assert not exhaustive.exhaustive_round([6, 3, 3], 3, 3, LINEAR).feasible
  # 4 ranks of C = 5: {6} on 2 (3), {3} on 1 (3), {3} on 1 (3); no plan
  # beats 3, since the 6 alone needs 2 ranks and 12 / 4 = 3.
  sol = exhaustive.exhaustive_round([6, 3, 3], 4, 5, LINEAR)
  assert sol.makespan_ms == 3.0
  assert sorted(sol.degrees) == [1, 1, 2]


def test_exhaustive_agrees_with_exact_round():
  model = cm.flexsp_preset()
  rng = np.random.default_rng(1)
  checked = 0
  for trial in range(25):
    n = int(rng.integers(2, 9))
    x = ln.long_tail(int(rng.integers(1, 7)), trial, max_len=16384 * n)
    a = exhaustive.exhaustive_round(x, n, 16384, model)
    b = bl.exact_round(x, n, 16384, model)
    assert a.feasible == (b is not None)
    if b is not None:
      assert a.makespan_ms == pytest.approx(b.estimated_ms, rel=1e-12)
      # The returned groups achieve the optimum and fit the ranks.
      times = [
        model.group_time(x[g], d)
        for g, d in zip(a.groups, a.degrees, strict=True)
      ]
      assert max(times) == pytest.approx(a.makespan_ms, rel=1e-12)
      assert sum(a.degrees) <= n
      checked += 1
  assert checked >= 15


@pytest.mark.parametrize(
  'lengths, n',
  [
    ([1454, 552, 62732, 514, 1837, 1645], 13),  # issue 12: was +35.6 %
    ([32147, 4064, 2213, 167, 10340], 4),  # was +26.4 %
    ([3890, 1199, 8500], 15),  # was +31.3 %
    ([7499, 8804, 7643, 8832, 8573, 8884, 8230, 8601], 11),  # tight memory
  ],
)
@pytest.mark.parametrize('capacity', [6456, 16384, 65536])
def test_issue_examples_reach_the_optimum(lengths, n, capacity):
  x = np.array(lengths)
  if x.max() > n * capacity:
    with pytest.raises(ValueError, match='cannot fit'):
      pl.plan_round(x, n, capacity, ONE_NODE)
    return
  best = exhaustive.exhaustive_round(x, n, capacity, ONE_NODE)
  plan = pl.plan_round(x, n, capacity, ONE_NODE)
  if not best.feasible:
    assert x.sum() > n * capacity or x.max() > n * capacity
    return
  assert plan is not None
  assert plan.makespan_ms <= best.makespan_ms * (1 + 0.02)


def test_small_sweep_gap_and_no_false_no_plan():
  cases = gap_sweep.sample_instances(30, 5, sequences=(2, 7))
  stats = gap_sweep.measure(pl.plan_round, cases, ONE_NODE)
  assert stats.no_plan == 0
  assert stats.max <= 0.10
  assert stats.mean <= 0.01
  assert stats.gaps.min() >= -1e-12  # nothing beats the optimum


def test_no_plan_only_when_none_exists():
  model = cm.flexsp_preset()
  x = np.array([8500, 8400, 8300, 8200, 8100, 8000])  # 49500 tokens
  n = 8
  tight = int(np.ceil(x.sum() / n))  # sum L = N C exactly (one group fits)
  plan = pl.plan_round(x, n, tight, model)
  assert plan is not None and sum(plan.degrees) <= n
  for g in plan.groups:
    assert x[g.seq_ids].sum() <= g.degree * tight
  assert pl.plan_round(x, n, tight - 1, model) is None  # sum L > N C


@pytest.mark.parametrize('preset', [cm.flexsp_preset, cm.linear_preset])
@pytest.mark.parametrize('n', [8, 16, 64])
def test_never_worse_than_static_or_one_group(preset, n):
  model = preset()
  for seed in range(3):
    x = ln.long_tail(int(3 * n), seed)
    cap = int(np.ceil(x.sum() / n / 0.6))
    plan = pl.plan_round(x, n, cap, model)
    assert plan is not None
    c = 1
    while c <= n:
      if placement.fits_nodes([c] * (n // c), n, model.devices_per_node):
        static = (
          bl.static_round(x, n, cap, model, degree=c) if n % c == 0 else None
        )
        if static is not None:
          assert plan.makespan_ms <= static.makespan_ms * (1 + 1e-9)
      c *= 2
    one = model.group_time(x, n)
    assert plan.makespan_ms <= one * (1 + 1e-9)


def test_table_width_keeps_every_improving_degree():
  model = cm.flexsp_preset()
  x = ln.long_tail(300, 0)
  w = pt.table_width(x, 1024, model, cm.RING)
  assert 8 <= w < 1024
  t = model.degree_table(x, 1024)  # [B, N]
  best_within = t[:, :w].min(axis=1)
  # No sequence gets faster on more than W ranks than on its best <= W.
  assert np.all(t[:, w:].min(axis=1) >= best_within * (1 - 1e-12))
  assert pt.table_width(x, 64, model, cm.RING) == 64  # dense when small
