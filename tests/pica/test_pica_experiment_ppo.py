"""pica.experiment with rl.algorithm = 'ppo' (critic + GAE) on `tiny`."""

import pytest

from experiments.pica.configs import default
from experiments.pica.configs import paper
from experiments.pica.configs import tiny
from pica import experiment


def test_algorithm_configs():
  assert tiny.get_config().rl.algorithm == 'grpo'
  assert default.get_config().rl.algorithm == 'grpo'
  p = paper.get_config().rl
  assert p.algorithm == 'ppo' and p.critic_learning_rate == 10 * p.learning_rate
  assert p.gamma == p.lam == 1.0


def test_unknown_algorithm_is_rejected(tmp_path):
  c = tiny.get_config()
  c.rl.algorithm = 'reinforce'
  with pytest.raises(
    ValueError,
    match=r"rl.algorithm='reinforce' is invalid; allowed: one of \(",
  ):
    experiment.run(c, str(tmp_path))


@pytest.mark.slow
def test_tiny_ppo_run_both_arms(tmp_path):
  c = tiny.get_config()
  c.rl.algorithm = 'ppo'
  m = experiment.run(c, str(tmp_path))
  series = m['curves'][0]['series']
  assert set(series) == {'outcome-only', 'PiCA', 'oracle hazard'}
  assert len(series['PiCA']['x']) == 2
  assert any('PPO' in n for n in m['notes'])
  for a in ('heldout_em_outcome_only', 'heldout_em_pica', 'heldout_em_oracle'):
    assert 0.0 <= m['summary'][a] <= 1.0


@pytest.mark.slow
def test_tiny_run_with_a_ppo_arm_beside_grpo(tmp_path):
  c = tiny.get_config()
  c.arms = ('outcome', 'outcome_ppo')
  m = experiment.run(c, str(tmp_path))
  methods = {(e['method'], e['baseline']) for e in m['effects']}
  assert methods == {('outcome-only (PPO)', 'outcome-only')}
  assert (tmp_path / 'rl_outcome_ppo' / 'checkpoints').is_dir()
  assert 0.0 <= m['summary']['heldout_em_outcome_ppo'] <= 1.0
