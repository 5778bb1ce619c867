"""Tests for dhp.experiment (stages, config checks, cache) and its configs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dhp import experiment
from dhp.experiment import config as config_lib
from dhp.experiment import simulation
from experiments import registry
from experiments.dhp.configs import default
from experiments.dhp.configs import paper
from experiments.dhp.configs import tiny

F32_EPS = float(np.finfo(np.float32).eps)


def _small_config():
  """Tiny, cut to one simulation cell and no runtime check (seconds)."""
  cfg = tiny.get_config()
  cfg.simulation.distributions = ['long_tail']
  cfg.simulation.cluster_sizes = [8]
  cfg.sweep.enabled = False
  cfg.latency.cluster_sizes = [8]
  cfg.latency.repeats = 1
  cfg.gap.instances = 2
  cfg.train.enabled = False
  return cfg


def test_configs_construct_and_validate():
  for mod in (tiny, default, paper):
    cfg = mod.get_config()
    assert cfg.name == mod.__name__.rsplit('.', 1)[-1]
    config_lib.validate_config(cfg, num_available_devices=8)
  assert registry.EXPERIMENTS['dhp'] == 'dhp.experiment:run'


def test_cost_from_config_bad_input():
  cfg = tiny.get_config()
  cfg.cost.preset = 'megatron'
  with pytest.raises(ValueError, match='preset'):
    experiment.cost_from_config(cfg.cost)
  cfg = tiny.get_config()
  cfg.cost.overrides = {'a3': 1.0}
  with pytest.raises(ValueError, match='a3'):
    experiment.cost_from_config(cfg.cost)
  cfg = tiny.get_config()
  cfg.cost.overrides = {'inter_node_gbps': -1.0}
  with pytest.raises(ValueError, match='inter_node_gbps'):
    experiment.cost_from_config(cfg.cost)


def _with(section, field, value):
  cfg = tiny.get_config()
  (cfg if section is None else cfg[section])[field] = value
  return cfg


@pytest.mark.parametrize(
  'section,field,value,match',
  [
    (None, 'steps', 5, r"unknown field 'steps' in the dhp config"),
    ('train', 'warmup_steps', 3, r"unknown field 'train.warmup_steps'"),
    ('simulation', 'cluster_sizes', [8, 0], r'cluster_sizes\[1\]=0'),
    ('simulation', 'distributions', ['zipf'], r'distributions\[0\]=.zipf.'),
    ('simulation', 'cluster_sizes', [], r'cluster_sizes=\[\] is invalid'),
    ('sweep', 'inter_node_gbps', [0.0], r'inter_node_gbps\[0\]=0.0 is inv'),
    ('gap', 'max_sequences', 20, r'config\.gap\.max_sequences=20'),
    ('train', 'learning_rate', 0.0, r'config\.train\.learning_rate=0.0'),
    ('train', 'num_devices', 64, r'train\.num_devices=64 .*the 8 devices'),
    ('train', 'max_len', 200, r'train\.max_len=200 .*at most config'),
    ('latency', 'repeats', 0, r'latency\.repeats=0 .*an integer >= 1'),
  ],
)
def test_bad_config_names_the_field(section, field, value, match):
  cfg = _with(section, field, value)
  with pytest.raises(ValueError, match=match):
    config_lib.validate_config(cfg, num_available_devices=8)


def test_old_model_field_name_is_rejected():
  cfg = tiny.get_config()
  cfg.train.model = dict(cfg.train.model, num_layers=1)
  with pytest.raises(
    ValueError, match=r"unknown field 'train.model.num_layers'"
  ):
    config_lib.validate_config(cfg, num_available_devices=8)


def test_bad_config_fails_before_any_work(tmp_path):
  cfg = _small_config()
  cfg.gap.max_devices = 1  # the last section checked: found before work
  with pytest.raises(ValueError, match=r'config\.gap\.max_devices=1'):
    experiment.run(cfg, str(tmp_path))
  assert not any(tmp_path.iterdir())


def test_small_run_writes_metrics_and_plots(tmp_path):
  cfg = _small_config()
  metrics = experiment.run(cfg, str(tmp_path))
  on_disk = json.loads((tmp_path / 'metrics.json').read_text())
  assert on_disk == metrics
  assert metrics['config_name'] == 'tiny'
  names = {p.name for p in tmp_path.glob('*.png')}
  assert names == {
    'speedup_vs_static_ring.png',
    'speedup_vs_ulysses.png',
    'speedup_vs_megatron_balanced.png',
    'utilisation.png',
    'planner_latency.png',
  }
  for name in names:
    assert (tmp_path / name).stat().st_size > 1000
  (row,) = metrics['tables'][0]['rows']
  assert row[:2] == ['long_tail', 8]
  # DHP plans every round with BFD + DP among its candidates: never slower
  # than paper mode, whose column is rounded to 3 decimals.
  paper_col = simulation.SPEEDUP_COLUMN + simulation.BASELINES.index(
    'dhp_paper_mode'
  )
  assert row[paper_col] >= 1.0
  s = metrics['summary']
  # The exact solver is optimal: DHP's gap is never negative.
  assert s['gap_to_exact_mean'] >= 0
  assert any('Cost model' in n for n in metrics['notes'])


def test_rerun_uses_cache_and_changed_config_recomputes(tmp_path, monkeypatch):
  cfg = _small_config()
  first = experiment.run(cfg, str(tmp_path))
  calls = []
  real = simulation._simulate_unit

  def counting(*args):
    calls.append(args[2:])
    return real(*args)

  monkeypatch.setattr(simulation, '_simulate_unit', counting)
  again = experiment.run(cfg, str(tmp_path))
  assert calls == []  # every unit came from the cache
  assert again['tables'][0] == first['tables'][0]
  cfg.simulation.capacity = 32768  # a field the units depend on
  changed = experiment.run(cfg, str(tmp_path))
  assert calls == [('long_tail', 8)]
  assert changed['tables'][0] != first['tables'][0]


def test_simulate_marks_infeasible_ulysses_as_none(tmp_path):
  cfg = tiny.get_config()
  cfg.simulation.num_heads = 3  # only degree 1 divides it: long ones fail
  cfg.simulation.distributions = ['long_tail']
  cfg.simulation.cluster_sizes = [8]
  rows, curves = simulation.simulate(
    cfg, experiment.cost_from_config(cfg.cost), tmp_path
  )
  ulysses = simulation.SPEEDUP_COLUMN + simulation.BASELINES.index('ulysses')
  assert rows[0][ulysses] is None
  assert 'ulysses' not in curves
  assert isinstance(rows[0][simulation.SPEEDUP_COLUMN], float)  # ring runs


@pytest.mark.slow
def test_tiny_run_end_to_end(tmp_path):
  cfg = tiny.get_config()
  metrics = experiment.run(cfg, str(tmp_path))
  s = metrics['summary']
  rows = metrics['tables'][0]['rows']
  col = simulation.SPEEDUP_COLUMN
  # The effect tiny shows: on long-tailed lengths DHP's simulated time beats
  # the best tuned static ring CP at both cluster sizes (1.29x and 1.24x on
  # tiny; near-uniform lengths show no gain, see the README).
  long_tail = [r for r in rows if r[0] == 'long_tail']
  assert len(long_tail) == 2
  assert all(r[col] > 1.05 for r in long_tail)
  assert s['utilisation_dhp_round1'] > s['utilisation_static_round1']
  # The runtime step: DHP losses are the single-device losses up to float32
  # summation order: rtol and atol in float32 ulps of the loss scale.
  (runtime,) = [t for t in metrics['tables'] if t['title'].startswith('Real')]
  (losses,) = [c for c in metrics['curves'] if c['title'].startswith('Tiny')]
  dhp_losses = np.array(losses['series']['DHP']['y'])
  ref_losses = np.array(losses['series']['single device']['y'])
  assert len(dhp_losses) == cfg.train.steps
  scale = float(np.abs(ref_losses).max())
  np.testing.assert_allclose(
    dhp_losses, ref_losses, rtol=64 * F32_EPS, atol=16 * F32_EPS * scale
  )
  # Warm-up compiled at least one executable per group of step 0's plan.
  groups_step0 = len(runtime['rows'][0][4].split('+'))
  assert s['executables_after_warmup'] >= groups_step0
  assert (tmp_path / 'train_loss.png').stat().st_size > 1000


@pytest.mark.slow
def test_main_and_benchmark_run(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
  env = dict(os.environ, PYTHONPATH=root)
  out = subprocess.run(
    [
      sys.executable,
      '-m',
      'experiments.benchmarks.dhp_planner',
      '--quick',
      '--repeats',
      '1',
    ],
    cwd=root,
    env=env,
    capture_output=True,
    text=True,
    check=True,
  )
  last = out.stdout.strip().splitlines()[-1]
  assert last.startswith('dhp_planner: gap_mean='), last
  assert ' gap_max=' in last and ' cpu_ms_64x512=' in last
  subprocess.run(
    [
      sys.executable,
      '-m',
      'experiments.dhp.main',
      '--config=experiments/dhp/configs/tiny.py',
      '--config.train.enabled=False',
      f'--workdir={tmp_path}',
    ],
    cwd=root,
    env=env,
    check=True,
    capture_output=True,
  )
  assert (tmp_path / 'metrics.json').exists()


def test_calibration_without_a_fit_is_reported_not_raised(
  tmp_path, monkeypatch
):
  """When no cost model fits the measured times: a table, no crash."""
  from dhp.experiment import calibration_stage

  def no_fit(measurements, base):
    del measurements, base
    raise ValueError('fit: no grid point gives a model whose time grows.')

  monkeypatch.setattr(calibration_stage.cb, 'fit', no_fit)
  cfg = _small_config()
  result = experiment.run(cfg, str(tmp_path))
  (table,) = [t for t in result['tables'] if 'no cost model' in t['title']]
  cal = cfg.calibration
  assert len(table['rows']) == len(cal.degrees) * len(cal.lengths)
  assert 'No fit: fit: no grid point' in table['note']
  assert 'calibration_rms_relative_error' not in result['summary']
