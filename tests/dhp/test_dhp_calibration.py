"""Tests for dhp.calibration (the fit) and dhp.gap_sweep (the harness)."""

import dataclasses

import numpy as np
import pytest

from dhp import calibration as cb
from dhp import cost_model as cm
from dhp import gap_sweep
from dhp import model as model_lib

CFG = model_lib.ModelConfig(
  vocab_size=16, d_model=16, num_heads=2, num_layers=1, d_ff=32, max_len=128
)


def test_fit_recovers_a_model_on_the_grid():
  base = cb.runtime_base(CFG)
  true = dataclasses.replace(
    base, a1=2e-5, a2=3e-3, beta=0.4, eff_half=64.0, ring_step_ms=0.05
  )
  points = [
    cb.Measurement((n,), d, true.group_time([n], d))
    for d in (1, 2, 4, 8)
    for n in (64, 128, 256, 512)
  ]
  fit = cb.fit(points, base)
  assert fit.model.eff_half == 64.0 and fit.model.ring_step_ms == 0.05
  np.testing.assert_allclose(
    [fit.model.a1, fit.model.a2, fit.model.beta], [2e-5, 3e-3, 0.4], rtol=1e-6
  )
  assert fit.rms_relative_error < 1e-6
  assert fit.max_relative_error < 1e-6


def test_fit_reports_errors_of_noisy_times():
  base = cb.runtime_base(CFG)
  true = dataclasses.replace(base, a1=2e-5, a2=3e-3, beta=0.4, eff_half=64.0)
  rng = np.random.default_rng(0)
  points = [
    cb.Measurement((n,), d, true.group_time([n], d) * rng.uniform(0.9, 1.1))
    for d in (1, 2, 4)
    for n in (64, 256)
  ]
  fit = cb.fit(points, base)
  rel = fit.predicted_ms / np.array([p.ms for p in points]) - 1
  np.testing.assert_allclose(fit.relative_errors, rel, rtol=1e-12)
  assert 0 < fit.rms_relative_error <= fit.max_relative_error < 0.2


def test_fit_bad_input():
  base = cb.runtime_base(CFG)
  with pytest.raises(ValueError, match='>= 3 measurements'):
    cb.fit([cb.Measurement((64,), 1, 1.0)], base)
  points = [cb.Measurement((64,), d, 1.0) for d in (1, 2, 4)]
  with pytest.raises(ValueError, match='non-empty'):
    cb.fit(points, base, eff_half_grid=())


def test_gap_stats_count_failures():
  stats = gap_sweep.gap_stats([0.0, 0.02, np.inf, 0.005])
  assert stats.no_plan == 1
  assert stats.max == np.inf and stats.mean == np.inf
  assert stats.within_1pct == 0.5 and stats.within_5pct == 0.75
  assert 'false "no plan": 1' in stats.line()


def test_sample_instances_ranges_and_errors():
  cases = gap_sweep.sample_instances(40, 3)
  assert {c.distribution for c in cases} == set(gap_sweep.DISTRIBUTIONS)
  for c in cases:
    assert 2 <= len(c.lengths) <= 12 and 4 <= c.num_devices <= 16
    assert 0.25 <= c.utilisation <= 0.95
    # sum L <= N C: one group of all ranks always fits.
    assert c.lengths.sum() <= c.num_devices * c.capacity
  with pytest.raises(ValueError, match='at most 12'):
    gap_sweep.sample_instances(3, 0, sequences=(2, 13))
  with pytest.raises(ValueError, match='utilisation'):
    gap_sweep.sample_instances(3, 0, utilisation=(0.5, 1.5))
  with pytest.raises(ValueError, match='zipf'):
    gap_sweep.sample_instances(3, 0, distributions=('zipf',))


def test_single_node_extends_the_bandwidth_table():
  one = gap_sweep.single_node(cm.flexsp_preset(), 16)
  assert one.devices_per_node == 16
  assert one.bandwidth(np.array([12]))[0] == 121.0  # intra-node
