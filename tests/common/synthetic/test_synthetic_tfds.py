"""Tests for the tfds builders (array_record, read without TensorFlow)."""

import sys

import pytest

from common.synthetic import arithmetic
from common.synthetic import knowledge_world as kw
from common.synthetic import tfds_builders as tb

SMALL = dict(num_entities=40, num_distractors=20, train_questions=40)


def test_same_seed_identical_records_in_two_dirs(tmp_path):
  a = tb.load('knowledge_world_qa', tmp_path / 'a', seed=3, **SMALL)
  b = tb.load('knowledge_world_qa', tmp_path / 'b', seed=3, **SMALL)
  assert set(a) == {'train', 'test', 'compositional'}
  assert a == b
  c = tb.load('knowledge_world_qa', tmp_path / 'a', seed=4, **SMALL)
  assert c['train'] != a['train']
  assert 'tensorflow' not in sys.modules


def test_records_equal_the_generator(tmp_path):
  cfg = dict(seed=5, **SMALL)
  recs = tb.load('knowledge_world_qa', tmp_path, **cfg)
  world = kw.build_knowledge_world(kw.KnowledgeWorldConfig.tiny(**cfg))
  for split in kw.SPLITS:
    want = [
      {k: v for k, v in q.items() if k != 'split'} for q in world.split(split)
    ]
    assert recs[split] == want
  corpus = tb.load('knowledge_world_corpus', tmp_path, split='corpus', **cfg)
  assert corpus == list(world.documents)


def test_arithmetic_records(tmp_path):
  recs = tb.load('arithmetic_tasks', tmp_path, seed=2, train_size=30)
  probs = arithmetic.make_problems(
    arithmetic.ArithmeticConfig.tiny(seed=2, train_size=30)
  )
  assert [r['id'] for r in recs['train']] == [p.id for p in probs['train']]
  for r, p in zip(recs['test'], probs['test'], strict=True):
    assert r['answer'] == p.answer and isinstance(r['answer'], int)
    assert r['steps'] == [{'expression': e, 'result': v} for e, v in p.steps]
    assert r['tool_target'].endswith(f'<answer> {p.answer} </answer>')
  again = tb.load('arithmetic_tasks', tmp_path / 'x', seed=2, train_size=30)
  assert again == recs
  other = tb.load('arithmetic_tasks', tmp_path, seed=3, train_size=30)
  assert other['train'] != recs['train']


def test_presets_and_config_names(tmp_path):
  builder = tb.get_builder('knowledge_world_qa', tmp_path)
  assert builder.builder_config.name == 'tiny'
  assert builder.builder_config.world == kw.KnowledgeWorldConfig.tiny()
  custom = tb.get_builder('knowledge_world_qa', tmp_path, seed=9)
  assert custom.builder_config.name.startswith('s9_')
  assert custom.builder_config.world.seed == 9
  arith = tb.get_builder('arithmetic_tasks', tmp_path, 'default')
  assert arith.builder_config.name == 'default'
  # The config is recorded in the dataset metadata.
  assert builder.info.metadata['config']['num_entities'] == 60


def test_bad_arguments(tmp_path):
  with pytest.raises(ValueError, match='unknown dataset'):
    tb.load('nope', tmp_path)
  with pytest.raises(ValueError, match='unknown preset'):
    tb.load('arithmetic_tasks', tmp_path, preset='huge')
  msg = r"unknown KnowledgeWorldConfig fields \['entities'\]"
  with pytest.raises(ValueError, match=msg):
    tb.load('knowledge_world_qa', tmp_path, entities=3)
  with pytest.raises(ValueError, match='num_entities'):
    tb.load('knowledge_world_qa', tmp_path, num_entities=5)
  with pytest.raises(ValueError, match='has no split'):
    tb.load('arithmetic_tasks', tmp_path, split='validation')
