"""The TPAW experiment: tiny end to end, configs, bad config values."""

import json

import pytest

from common import schema
from experiments.tpaw.configs import default
from experiments.tpaw.configs import paper
from experiments.tpaw.configs import tiny
from tpaw import experiment


@pytest.mark.slow  # ~40 s idle (compiles dominate); ~100 s under load
def test_tiny_end_to_end(tmp_path):
  m = experiment.run(tiny.get_config(), str(tmp_path))
  s = m['summary']
  for arm in experiment.ARMS:
    assert f'em_{arm}' in s
  # What the tiny run shows: TRW keeps the target reward above the run
  # without it (the paper: without TRW it decays), with the same seed and
  # warm start (iteration 1 is the same for both except alpha).
  assert s['target_reward_last_tpaw'] > s['target_reward_last_tpaw_no_trw']
  assert {e['baseline'] for e in m['effects']} >= {
    'SPIN (team of 1)',
    'more SFT (control)',
  }
  assert (tmp_path / 'em_per_iteration.png').is_file()
  on_disk = json.loads((tmp_path / 'metrics.json').read_text())
  assert on_disk['summary']['em_tpaw'] == s['em_tpaw']
  # A rerun reads the cached results (no training): identical numbers.
  again = experiment.run(tiny.get_config(), str(tmp_path))
  assert again['summary']['em_tpaw'] == s['em_tpaw']


@pytest.mark.parametrize('module', [tiny, default, paper])
def test_configs_validate(module):
  experiment.validate_config(module.get_config())


def test_paper_config_is_the_papers_settings():
  c = paper.get_config()
  sp = c.selfplay
  assert (sp.eta, sp.gamma, sp.n_max, sp.iterations) == (6.0, 0.5, 3, 4)
  assert c.data.source == 'chat_jsonl' and c.data.num_train == 50_000
  assert c.model.preset == 'qwen2.5-1.5b' and c.model.hf_dir


@pytest.mark.parametrize(
  'field, value, allowed',
  [
    ('selfplay.eta', 0.0, 'a finite number in (0.0, inf)'),
    ('selfplay.gamma', -0.5, 'a finite number in [0.0, inf)'),
    ('selfplay.n_max', 0, 'an integer >= 1'),
    ('selfplay.log_every', 3, 'a divisor of selfplay.steps_per_iteration'),
    ('data.source', 'csv', "one of ('arithmetic'"),
  ],
)
def test_bad_config_names_field_value_and_allowed(field, value, allowed):
  c = tiny.get_config()
  section, leaf = field.split('.')
  c[section][leaf] = value
  with pytest.raises(schema.ConfigError) as info:
    experiment.validate_config(c)
  message = str(info.value)
  assert message.startswith(f'config.{field}')
  assert allowed in message


def test_unknown_field_and_missing_path(tmp_path):
  c = tiny.get_config()
  c.selfplay.etta = 6.0
  with pytest.raises(schema.ConfigError, match='did you mean selfplay.eta'):
    experiment.validate_config(c)
  c = tiny.get_config()
  c.data.source = 'chat_jsonl'
  with pytest.raises(schema.ConfigError, match='config.data.path'):
    experiment.run(c, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()  # nothing written before the check


def test_jsonl_source_and_prompt_longer_than_context(tmp_path):
  rows = [
    {'prompt': f'add {i} and 1', 'completion': f'{i + 1}'} for i in range(20)
  ]
  path = tmp_path / 'pc.jsonl'
  path.write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
  c = tiny.get_config()
  c.data.update(
    {
      'source': 'prompt_completion_jsonl',
      'path': str(path),
      'eval_path': str(path),
      'num_train': 16,
      'num_eval': 4,
      'prompt_len': 2,
    }
  )
  with pytest.raises(ValueError, match=r'pc.jsonl:1: the prompt has 4 tokens'):
    experiment.Task(c)
  c.data.prompt_len = 6
  task = experiment.Task(c)
  assert len(task.train) == 16 and task.golden[0] == '1'
  c.data.num_eval = 30  # the file has 20 records: an error, not fewer
  with pytest.raises(schema.ConfigError, match='config.data.num_eval=30'):
    experiment.Task(c)
