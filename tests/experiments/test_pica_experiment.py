"""Tests for experiments/pica and pica.experiment."""

import json

import pytest

from common.report import schema
from experiments.pica.configs import default
from experiments.pica.configs import hard
from experiments.pica.configs import paper
from experiments.pica.configs import tiny
from pica import config as config_lib
from pica import experiment
from pica.stages import context
from pica.stages import report


def test_configs_build(tmp_path):
  for mod in (tiny, default, hard, paper):
    c = mod.get_config()
    assert c.rollout.max_turns >= c.world.max_hops
    config_lib.resolve(c)  # every field known and in range
  p = paper.get_config()
  assert p.rollout.max_turns == 5 and p.rollout.topk == 3
  assert p.rl.epsilon_high == 0.28 and p.reward.coef == 1.3
  assert len(p.data['test']) == 7
  assert p.hazard.placeholder == '<|vision_start|>' and p.sft.steps == 0
  # hard: the world and budget, the penalty able to fire
  h = config_lib.resolve(hard.get_config())
  assert (h.world.max_hops, h.rollout.max_turns, h.rollout.topk) == (4, 5, 3)
  assert report.penalty_can_fire(h) and h.eval.samples == 4
  assert (h.rl.steps, h.rl.prompts_per_step, h.rl.num_generations) == (
    300,
    16,
    5,
  )
  ctx = context.Context(h)  # world, corpus and sizes check out
  evals = {k: len(v) for k, v in ctx.questions.evals.items()}
  assert evals == {
    'compositional': 200,
    **{f'test_{k}hop': 150 for k in (1, 2, 3, 4)},
  }
  # The paper path runs (tests/pica/test_pica_hf_paper.py); with its
  # placeholder paths, the first missing file is named before any work.
  with pytest.raises(FileNotFoundError, match='path/to/wiki-18.jsonl'):
    experiment.run(p, str(tmp_path / 'work'))
  assert not (tmp_path / 'work').exists()


def test_setup_rejects_too_few_turns():
  c = tiny.get_config()
  c.rollout.max_turns = 1
  with pytest.raises(
    ValueError, match='max_turns=1 < the 3 hops of the longest'
  ):
    context.Context(config_lib.resolve(c))


def test_run_rejects_a_typo_before_work(tmp_path):
  c = tiny.get_config()
  with c.unlocked():
    c.hazard.lerning_rate = 1e-3
  with pytest.raises(ValueError, match=r'unknown field\(s\) hazard.lerning'):
    experiment.run(c, str(tmp_path))
  assert not any(tmp_path.iterdir())  # nothing was written


@pytest.mark.slow
def test_tiny_run_writes_valid_metrics_and_resumes(tmp_path):
  m = experiment.run(tiny.get_config(), str(tmp_path))
  on_disk = json.loads((tmp_path / 'metrics.json').read_text())
  schema.validate_metrics(on_disk, 'metrics.json')
  assert on_disk['summary'] == m['summary']
  rows = {r[0]: r for r in m['tables'][0]['rows']}
  assert set(rows) == {'test_1hop', 'test_2hop', 'test_3hop', 'compositional'}
  s = m['summary']
  for arm in ('sft', 'outcome_only', 'pica', 'oracle'):
    for split in ('heldout', 'compositional'):
      assert 0.0 <= s[f'{split}_em_{arm}'] <= 1.0
  assert s['hazard_trajectories'] == 8
  # The effect tiny shows: 3 CRM steps lower the hazard model's loss on
  # held-out trajectories (measured 1.30 -> 0.93 on 1 and on 8 devices).
  start, end = s['hazard_heldout_crm_loss_start'], s['hazard_heldout_crm_loss']
  assert end < 0.85 * start, (start, end)
  series = m['curves'][0]['series']
  assert set(series) == {'outcome-only', 'PiCA', 'oracle hazard'}
  assert series['PiCA']['x'] == [1, 2]
  # greedy and 2-sample EM (tiny's eval.samples), held-out and
  # compositional, per step-reward arm
  assert [e['method'] for e in m['effects']] == ['PiCA'] * 4 + [
    'oracle hazard'
  ] * 4
  assert 0.0 <= s['heldout_em_sampled_pica'] <= 1.0
  for stage in ('sft', 'hazard', 'rl_outcome', 'rl_pica', 'rl_oracle'):
    assert (tmp_path / stage / 'checkpoints').is_dir(), stage
  # a second call finds every stage finished and gives the same numbers
  again = experiment.run(tiny.get_config(), str(tmp_path))
  assert again['tables'] == m['tables'] and again['curves'] == m['curves']


@pytest.mark.slow
def test_chunked_hazard_training_reruns_from_its_checkpoint(tmp_path):
  # With early stopping the hazard stage trains in chunks; a rerun must
  # restore the finished stage (not fail on a checkpoint past chunk 1).
  c = tiny.get_config()
  c.hazard.update({'steps': 4, 'eval_every': 1, 'patience': 1})
  c.arms = ('outcome',)
  first = experiment.run(c, str(tmp_path))
  again = experiment.run(c, str(tmp_path))
  assert again['tables'] == first['tables']
  assert first['tables'][1]['rows'][0][2] == 4  # hazard steps trained
