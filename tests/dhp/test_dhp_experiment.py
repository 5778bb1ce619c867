"""Tests for dhp.experiment and its configs."""

import json
import os
import subprocess
import sys

import pytest

from dhp import experiment
from experiments import registry
from experiments.dhp.configs import default
from experiments.dhp.configs import paper
from experiments.dhp.configs import tiny


def test_configs_construct():
  for mod in (tiny, default, paper):
    cfg = mod.get_config()
    assert cfg.name == mod.__name__.rsplit('.', 1)[-1]
    experiment.cost_from_config(cfg.cost)
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


def test_simulation_parts_without_training(tmp_path):
  cfg = tiny.get_config()
  cfg.train.enabled = False
  metrics = experiment.run(cfg, str(tmp_path))
  on_disk = json.loads((tmp_path / 'metrics.json').read_text())
  assert on_disk['summary'] == metrics['summary']
  assert metrics['config_name'] == 'tiny'
  for fig in metrics['figures']:
    assert (tmp_path / fig['path']).stat().st_size > 1000
  sim = metrics['tables'][0]
  assert len(sim['rows']) == 4  # 2 distributions x 2 cluster sizes
  for row in sim['rows']:
    assert all(x > 0 for x in row[4:9])
  # The exact solver is optimal, so DHP's gap is never negative.
  assert metrics['summary']['gap_to_exact_mean'] >= 0
  assert any('Cost model' in n for n in metrics['notes'])


@pytest.mark.slow
def test_tiny_run_end_to_end(tmp_path):
  cfg = tiny.get_config()
  metrics = experiment.run(cfg, str(tmp_path))
  s = metrics['summary']
  assert s['train_max_loss_diff'] < 1e-5
  assert s['executables_compiled'] >= 1
  assert (tmp_path / 'train_loss.png').exists()


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
  assert (
    out.stdout.strip()
    .splitlines()[-1]
    .startswith('dhp_planner: python_dp_ms/numpy_dp_ms=')
  )
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


def test_simulate_marks_infeasible_ulysses_as_none():
  cfg = tiny.get_config()
  cfg.simulation.num_heads = 3  # only degree 1 divides it: long ones fail
  cfg.simulation.distributions = ['long_tail']
  cfg.simulation.cluster_sizes = [8]
  rows, curves = experiment.simulate(cfg, experiment.cost_from_config(cfg.cost))
  ulysses = 4 + experiment.BASELINES.index('ulysses')
  assert rows[0][ulysses] is None
  assert 'ulysses' not in curves
  assert rows[0][4] > 0  # static ring CP still runs
