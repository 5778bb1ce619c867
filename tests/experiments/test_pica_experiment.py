"""Tests for experiments/pica and pica.experiment."""

import json

import pytest

from common.report import schema
from experiments.pica.configs import default
from experiments.pica.configs import paper
from experiments.pica.configs import tiny
from pica import experiment


def test_configs_build():
  for mod in (tiny, default, paper):
    c = mod.get_config()
    assert c.rollout.max_turns >= c.world.max_hops
  p = paper.get_config()
  assert p.rollout.max_turns == 5 and p.rollout.topk == 3
  assert p.rl.epsilon_high == 0.28 and p.reward.coef == 1.3
  assert len(p.data['test']) == 7
  with pytest.raises(ValueError, match='not wired yet'):
    experiment.run(p, '/nonexistent')


def test_setup_rejects_too_few_turns():
  c = tiny.get_config()
  c.rollout.max_turns = 1
  with pytest.raises(ValueError, match='max_turns=1 < world max_hops=3'):
    experiment._Setup(c)


@pytest.mark.slow
def test_tiny_run_writes_valid_metrics(tmp_path):
  m = experiment.run(tiny.get_config(), str(tmp_path))
  on_disk = json.loads((tmp_path / 'metrics.json').read_text())
  schema.validate_metrics(on_disk, 'metrics.json')
  assert on_disk['summary'] == m['summary']
  rows = {r[0]: r for r in m['tables'][0]['rows']}
  assert set(rows) == {'test_1hop', 'test_2hop', 'test_3hop', 'compositional'}
  for r in rows.values():
    assert all(0.0 <= x <= 1.0 for x in r[1:4])
  assert m['summary']['hazard_trajectories'] == 8
  series = m['curves'][0]['series']
  assert set(series) == {'outcome', 'pica'} and len(series['pica']['x']) == 2
