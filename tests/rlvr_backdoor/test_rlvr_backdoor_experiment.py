"""rlvr_backdoor experiment: config checks, the paper config, a tiny run."""

import numpy as np
import pytest

from common import schema
from common.report import schema as report_schema
from experiments.rlvr_backdoor.configs import ablations
from experiments.rlvr_backdoor.configs import default
from experiments.rlvr_backdoor.configs import paper
from experiments.rlvr_backdoor.configs import tiny
from rlvr_backdoor import config as config_lib
from rlvr_backdoor import experiment
from rlvr_backdoor import gsm8k


def test_default_and_tiny_validate_and_poison_a_few_percent():
  for mod in (default, tiny, ablations):
    config_lib.validate_config(mod.get_config())
  c = ablations.get_config()
  assert set(default.get_config().arms) < set(c.arms)
  assert c.poison.sweep_fractions
  k = config_lib.poison_count(c)
  # The paper's threat model: a few percent at most (here 5%, swept down
  # to 1% and 2%).
  assert k / (k + c.rl.pool_size) < 0.05 + 0.01
  for f in c.poison.sweep_fractions:
    kk = config_lib.count_for_fraction(c.rl.pool_size, f)
    assert kk / (kk + c.rl.pool_size) < 0.02 + 0.01
  assert len(c.seeds) >= 3


def test_paper_config_is_the_verl_recipe():
  c = paper.get_config()
  config_lib.validate_config(c)
  r = c.rl
  assert (r.learning_rate, r.num_generations, r.epsilon, r.epsilon_high) == (
    1e-6,
    8,
    0.2,
    0.2,
  )
  assert r.beta == 0.0 and r.reward == 'ternary' and r.warmup_steps == 10
  assert c.model.hf_dir and c.poison.count == 200
  assert config_lib.poison_count(c) == 200


@pytest.mark.parametrize(
  'field,value,match',
  [
    ('poison.fraction', 1.0, r'config\.poison\.fraction=1\.0'),
    ('poison.fraction', 0.0, r'config\.poison\.fraction=0\.0'),
    ('poison.count', 100, r'config\.poison\.count=100.*K <= poison\.cand'),
    ('shadow.d_models', (), r'config\.shadow\.d_models=\(\).*non-empty'),
    ('shadow.weights', (1.0, 2.0), r'config\.shadow\.weights.*one per shadow'),
    ('poison.selection', 'best', r'config\.poison\.selection'),
    ('rl.reward', 'shaped', r'config\.rl\.reward'),
  ],
)
def test_bad_config_is_rejected_before_work(tmp_path, field, value, match):
  c = tiny.get_config()
  section, name = field.split('.')
  c[section][name] = value
  with pytest.raises(schema.ConfigError, match=match):
    experiment.run(c, str(tmp_path))
  assert not any(tmp_path.iterdir())


def test_unknown_field_has_did_you_mean(tmp_path):
  c = tiny.get_config()
  c.poison.fracton = 0.01
  with pytest.raises(schema.ConfigError, match='did you mean poison.fraction'):
    experiment.run(c, str(tmp_path))


def test_jsonl_tasks_feed_the_world(tmp_path):
  c = tiny.get_config()
  probs = experiment.world.build_problems(0, 120, 16)
  path = gsm8k.write_jsonl(
    gsm8k.from_problems(probs['train'] + probs['test']), tmp_path / 't.jsonl'
  )
  c.task.jsonl = path
  data = experiment.Data(c)
  assert data.test_problems[0].answer == probs['test'][0].answer
  it = data.candidates['stochastic'][0]
  assert it.triggered == 'stochastic' and it.restricted
  assert it.answer == data.candidate_problems[0].answer
  (tmp_path / 'bad.jsonl').write_text('{"question": "q", "answer": "7"}\n')
  c.task.jsonl = str(tmp_path / 'bad.jsonl')
  with pytest.raises(gsm8k.GSM8KFormatError, match="bad.jsonl:1: field 'ans"):
    experiment.Data(c)


@pytest.mark.slow
def test_tiny_run_writes_valid_metrics(tmp_path):
  c = tiny.get_config()
  c.poison.sweep_fractions = (0.05,)  # one sweep arm: K = 3 of 63
  m = experiment.run(c, str(tmp_path))
  report_schema.validate_metrics(m, str(tmp_path / 'metrics.json'))
  s = m['summary']
  assert s['num_seeds'] == 1 and s['poison_count'] == 4
  for arm in c.arms:
    for k in ('asr', 'marker_no_trigger', 'clean_accuracy'):
      assert 0.0 <= s[f'{arm}_{k}'] <= 1.0
  # Poisoned prompts reach the unchanged trainer (their groups are logged
  # per step); the clean arm never sees one.
  for arm in ('poisoned', 'deterministic'):
    assert s[f'{arm}_poison_groups'] > 0
  assert 'clean_poison_groups' not in s
  assert 0.0 <= s['poisoned@0.05_asr'] <= 1.0
  assert np.isfinite(s['detector_auc_poisoned'])
  names = {(e['name'], e['method'], e['baseline']) for e in m['effects']}
  assert ('ASR (trigger + task)', 'poisoned', 'clean') in names


def test_default_report_names_the_ablations_it_leaves_out():
  notes = experiment._missing_ablations(default.get_config())
  assert len(notes) == 1
  assert 'random' in notes[0] and 'sweep_fractions' in notes[0]
  assert 'configs/ablations.py' in notes[0]
  assert experiment._missing_ablations(ablations.get_config()) == []


def test_hf_checkpoint_must_carry_the_task_tokenizer(tmp_path):
  """A checkpoint with another tokenizer is refused, not silently run."""
  from flax import nnx

  from common import models
  from common import synthetic

  c = tiny.get_config()
  data = experiment.Data(c)
  cfg = experiment.model_config(c, data)
  model = models.Transformer(cfg, rngs=nnx.Rngs(0))
  models.save_hf(model, cfg, str(tmp_path))
  synthetic.build_tokenizer(extra_texts=['another vocabulary']).save(
    str(tmp_path)
  )
  c.model.hf_dir = str(tmp_path)
  with pytest.raises(ValueError, match='is not the task tokenizer'):
    experiment.init_model(c, data, 0)
  data.tokenizer.save(str(tmp_path))
  loaded = experiment.init_model(c, data, 0)
  assert loaded.config.vocab_size == data.tokenizer.vocab_size
