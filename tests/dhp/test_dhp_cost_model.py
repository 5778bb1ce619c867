"""Tests for dhp.cost_model: hand-computed T(G, d), presets, calibration."""

import dataclasses

import numpy as np
import pytest

from dhp import cost_model as cm


def _simple(**kw):
  params = dict(
    a1=1e-6,
    a2=1e-3,
    beta=2.0,
    eff_half=0.0,
    num_layers=1,
    hidden_size=1,
    kv_size=1,
    bytes_per_elem=1,
    ring_step_ms=0.5,
    comm_factor=1.0,
    devices_per_node=4,
    bandwidth_table=((2, 0.001), (4, 0.001)),
    inter_node_gbps=0.0005,
  )
  params.update(kw)
  return cm.CostModel(**params)


def test_group_time_hand_computed_exposed_comm():
  # L=1000, d=2: compute (1e-6*1e6 + 1e-3*1e3)/2 = 1.0 ms. One ring step:
  # send 500 B at 1e3 B/ms = 0.5 ms, block attention 1.0/2/2 = 0.25 ms,
  # exposed 0.25 + alpha 0.5; beta 2 -> 3.75 ms.
  assert _simple().group_time([1000], 2) == pytest.approx(3.75)


def test_group_time_hand_computed_with_efficiency_hides_comm():
  # eff(500) = 500 / 1500 = 1/3: compute 3.0, attention 1.5, block 0.75 >
  # send 0.5, so only alpha 0.5 is exposed: 3 + 0.5 + 2 = 5.5.
  assert _simple(eff_half=1000.0).group_time([1000], 2) == pytest.approx(5.5)


def test_single_device_has_no_communication():
  # d=1: (1 + 1) + beta; summed over two identical sequences.
  assert _simple().group_time([1000, 1000], 1) == pytest.approx(6.0)


def test_bandwidth_drops_across_nodes():
  model = _simple()
  np.testing.assert_allclose(
    model.bandwidth([2, 3, 4, 5, 8]), [0.001, 0.001, 0.001, 0.0005, 0.0005]
  )
  assert model.bandwidth(1) == np.inf
  assert model.bandwidth(2, crosses_node=True) == 0.0005
  # Same group, crossing a node boundary costs more.
  assert model.group_time([1000], 2, crosses_node=True) > model.group_time(
    [1000], 2
  )


def test_ulysses_hand_computed():
  # all-to-all: layers * 8 * h * bytes * L / d / BW = 8 * 500 / 1e3 = 4 ms,
  # plus alpha * (d - 1) = 0.5, compute 1.0, beta 2.
  assert _simple().group_time([1000], 2, comm='ulysses') == pytest.approx(7.5)


def test_time_table_matches_group_time():
  model = cm.flexsp_preset()
  lengths = np.array([5000, 30000, 1200, 70000])
  bins = np.array([0, 1, 0, 1])
  table = model.time_table(lengths, bins, 2, 16)
  assert np.isinf(table[:, 0]).all()
  for d in (1, 3, 8, 16):
    assert table[0, d] == pytest.approx(model.group_time([5000, 1200], d))
    assert table[1, d] == pytest.approx(model.group_time([30000, 70000], d))


def test_penalties_make_over_sharding_slower():
  model = cm.flexsp_preset()
  short = [2048]
  assert model.group_time(short, 16) > model.group_time(short, 8)
  linear = cm.linear_preset()
  # Without penalties, time only falls with more devices.
  times = [linear.group_time([65536], d) for d in (1, 2, 4, 8, 16)]
  assert all(a > b for a, b in zip(times, times[1:], strict=False))


@pytest.mark.parametrize(
  'field,value',
  [
    ('a1', -1.0),
    ('a2', float('nan')),
    ('beta', -2.0),
    ('num_layers', 0),
    ('devices_per_node', 0),
    ('inter_node_gbps', 0.0),
    ('comm_factor', -1.0),
    ('bandwidth_table', ()),
    ('bandwidth_table', ((4, 1.0), (2, 1.0))),
    ('bandwidth_table', ((2, 1.0),)),
    ('bandwidth_table', ((2, 0.0), (8, 1.0))),
  ],
)
def test_inconsistent_parameters_raise(field, value):
  with pytest.raises(ValueError, match=field.split('_')[0]):
    dataclasses.replace(cm.flexsp_preset(), **{field: value})


def test_zero_compute_raises():
  with pytest.raises(ValueError, match='a1 and a2'):
    cm.CostModel(a1=0.0, a2=0.0)


def test_bad_comm_and_degree_raise():
  model = cm.flexsp_preset()
  with pytest.raises(ValueError, match='comm'):
    model.group_time([100], 2, comm='allgather')
  with pytest.raises(ValueError, match='degree'):
    model.sequence_times([100], 0)
  with pytest.raises(ValueError, match='empty'):
    model.group_time([], 2)


def test_calibrate_recovers_parameters():
  truth = cm.flexsp_preset(a1=3e-6, a2=0.12, beta=40.0)
  base = cm.flexsp_preset(a1=1e-6, a2=0.5, beta=0.0)
  rng = np.random.default_rng(0)
  data = []
  for _ in range(12):
    lens = rng.integers(1000, 60000, rng.integers(1, 4))
    d = int(rng.integers(1, 9))
    data.append((lens, d, truth.group_time(lens, d)))
  fit = cm.calibrate(data, base)
  np.testing.assert_allclose(
    [fit.a1, fit.a2, fit.beta], [truth.a1, truth.a2, truth.beta], rtol=1e-6
  )


def test_calibrate_bad_input():
  base = cm.flexsp_preset()
  with pytest.raises(ValueError, match='>= 3'):
    cm.calibrate([([100], 1, 1.0)], base)
  bad = [([100], 1, 1.0), ([200], 1, float('inf')), ([300], 1, 3.0)]
  with pytest.raises(ValueError, match='measurement 1'):
    cm.calibrate(bad, base)
  with pytest.raises(ValueError, match='degree'):
    cm.calibrate([([100], 0, 1.0)] * 3, base)
