"""Tests for the lm_core example (common/examples/lm_core.py)."""

import json

import pytest

from common import synthetic
from common.examples import lm_core as experiment
from common.report import schema
from experiments.lm_core.configs import paper
from experiments.lm_core.configs import tiny


@pytest.fixture(scope='module')
def world():
  cfg = tiny.get_config()
  return synthetic.build_knowledge_world(
    synthetic.KnowledgeWorldConfig(**cfg.world.to_dict())
  )


def test_examples_hold_the_golden_document(world):
  examples = experiment.make_examples(world, 'test', k=3)
  assert examples
  by_id = world.document_by_id
  questions = [q for q in world.split('test') if q['hops'] == 1]
  for ex, q in zip(examples, questions, strict=True):
    gold = by_id[q['decomposition'][0]['doc_id']]
    title, _, text = gold['contents'].partition('\n')
    assert text in ex['prompt']
    assert ex['prompt'].count('Doc ') == 3
    assert ex['response'] == f'<answer> {q["golden_answers"][0]} </answer>'


def test_train_and_test_use_disjoint_entities(world):
  heldout = {e.name for e in world.heldout_entities}
  train = experiment.make_examples(world, 'train', k=3)
  for ex in train:
    for a in ex['golden_answers']:
      assert a not in heldout


def test_paper_config_builds_the_real_shape():
  cfg = paper.get_config()
  mc = experiment._model_config(cfg, vocab_size=1000)
  assert (mc.d_model, mc.n_layers, mc.n_heads, mc.n_kv_heads) == (
    896,
    24,
    14,
    2,
  )
  assert mc.vocab_size == 1000


@pytest.mark.slow
def test_tiny_run_writes_valid_metrics_and_reruns(tmp_path):
  result = experiment.run(tiny.get_config(), str(tmp_path))
  on_disk = json.loads((tmp_path / 'metrics.json').read_text())
  assert on_disk['summary'] == result['summary']
  schema.validate_metrics(on_disk, str(tmp_path / 'metrics.json'))
  # What ten SFT steps can show: the loss falls.
  (sft_curve,) = [c for c in result['curves'] if c['title'].startswith('SFT')]
  losses = sft_curve['series']['sft loss']['y']
  assert losses[-1] < 0.9 * losses[0], losses
  for arm in ('sft', 'grpo', 'sft_more'):
    assert (tmp_path / 'seed0' / arm / 'checkpoints').is_dir()
  # One seed: each effect is reported, none is called shown.
  assert [e['num_seeds'] for e in result['effects']] == [1, 1, 1]
  assert result['headline'][0] == 'test_em_after_grpo'
  # A rerun in the same workdir resumes from the finished checkpoints and
  # reports the same numbers (the history spans the earlier run).
  again = experiment.run(tiny.get_config(), str(tmp_path))
  drop = lambda s: {k: v for k, v in s.items() if k != 'seconds'}
  assert drop(again['summary']) == drop(result['summary'])
  assert again['curves'] == result['curves']
  assert (tmp_path / 'tokenizer' / 'tokenizer.json').is_file()


def test_demonstration_pool_larger_than_the_train_set_is_refused(tmp_path):
  cfg = tiny.get_config()
  cfg.sft.num_demonstrations = 10**6
  with pytest.raises(ValueError, match='sft.num_demonstrations'):
    experiment.run(cfg, str(tmp_path))
  assert not (tmp_path / 'seed0').exists()  # refused before any training


def test_demonstration_pool_smaller_than_a_batch_is_refused(tmp_path):
  cfg = tiny.get_config()
  cfg.sft.num_demonstrations = cfg.sft.batch_size - 1
  with pytest.raises(ValueError, match='sft.batch_size'):
    experiment.run(cfg, str(tmp_path))
