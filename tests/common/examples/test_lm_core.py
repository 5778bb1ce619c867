"""Tests for the lm_core example (common/examples/lm_core.py)."""

import json
from types import SimpleNamespace

import numpy as np
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


class _AlternatingSampler:
  """Answers row i of call c with `answers[c][i]` when i is even, else
  'wrong'."""

  def __init__(self, tokenizer, answers, width=8):
    self.tok, self.answers, self.width = tokenizer, answers, width
    self.calls = []

  def update(self, params):
    del params

  def sample(self, ids, mask, key, cfg):
    del mask, key
    answers = self.answers[len(self.calls)]
    self.calls.append(cfg.temperature)
    rows = []
    for i in range(len(ids)):
      text = answers[i] if i % 2 == 0 else 'wrong'
      rows.append(self.tok.encode(f'<answer> {text} </answer>')[: self.width])
    tokens = np.full((len(ids), self.width), self.tok.pad_id, np.int32)
    for i, r in enumerate(rows):
      tokens[i, : len(r)] = r
    return SimpleNamespace(tokens=tokens, mask=tokens != self.tok.pad_id)


def test_exact_match_rate_averages_every_sample(world):
  tok = synthetic.build_tokenizer(world)
  ex = experiment.make_examples(world, 'test', k=1)[:3]
  gold = [e['golden_answers'][0] for e in ex]
  kw = dict(max_prompt_len=48, max_new_tokens=8, batch_size=4)
  # Greedy: rows 0 and 2 of [e0, e1, e2] (+ a pad row) are right: 2 / 3.
  greedy = _AlternatingSampler(tok, [gold + gold[-1:]])
  rate = experiment.exact_match_rate(greedy, None, tok, ex, **kw)
  np.testing.assert_allclose(rate, 2 / 3)
  assert greedy.calls == [0.0]
  # Two samples each: rows [e0, e0, e1, e1 | e2, e2]: the even rows of
  # each batch are right, one sample of every question: 3 / 6.
  reps = [g for g in gold for _ in range(2)]
  sampled = _AlternatingSampler(tok, [reps[:4], reps[4:] * 2])
  rate = experiment.exact_match_rate(
    sampled, None, tok, ex, **kw, temperature=0.7, samples=2
  )
  np.testing.assert_allclose(rate, 0.5)
  assert sampled.calls == [0.7, 0.7]


@pytest.mark.parametrize('temperature,samples', [(0.0, 2), (0.7, 0)])
def test_exact_match_rate_refuses_bad_sample_counts(world, temperature,
                                                    samples):  # fmt: skip
  tok = synthetic.build_tokenizer(world)
  ex = experiment.make_examples(world, 'test', k=1)[:2]
  with pytest.raises(ValueError, match=f'samples={samples}'):
    experiment.exact_match_rate(
      None, None, tok, ex, 48, 8, temperature=temperature, samples=samples
    )


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
  assert [e['num_seeds'] for e in result['effects']] == [1] * 5
  assert 'test_sampled_em_after_grpo' in result['summary']
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
