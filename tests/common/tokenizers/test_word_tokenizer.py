"""Tests for common.tokenizers.WordTokenizer."""

import json
import os

import numpy as np
import pytest
import tokenizers

from common import synthetic
from common.tokenizers import CONTROL_TOKENS
from common.tokenizers import TAG_TOKENS
from common.tokenizers import WordTokenizer

CORPUS = [
  'Kalo Varen was born in Dorvik Falls.',
  'Who founded Vel Corp? The founder of Vel Corp is Kalo Varen.',
  'Vel Corp was founded in 1873.',
]


@pytest.fixture(scope='module')
def tok():
  return WordTokenizer.build(CORPUS)


@pytest.fixture(scope='module')
def world_tok():
  world = synthetic.build_knowledge_world(synthetic.KnowledgeWorldConfig.tiny())
  return world, synthetic.build_tokenizer(world)


def test_control_and_tag_ids(tok):
  assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
  for i, t in enumerate(CONTROL_TOKENS + TAG_TOKENS):
    assert tok.token_id(t) == i
  with pytest.raises(KeyError, match='not in the vocabulary'):
    tok.token_id('<nope>')


def test_tags_are_single_tokens_without_spaces(tok):
  text = '<think>x</think><search>Vel Corp</search><answer>1873</answer>'
  toks = tok.tokenize(text)
  assert toks == [
    '<think>', '<unk>', '</think>', '<search>', 'Vel', 'Corp', '</search>',
    '<answer>', '1', '##8', '##7', '##3', '</answer>',
  ]  # fmt: skip
  for t in TAG_TOKENS:
    assert tok.encode(t) == [tok.token_id(t)]


def test_digits_split_and_glued_back(tok):
  ids = tok.encode('1873 13 3 0')
  assert [tok.id_to_token(i) for i in ids] == [
    '1', '##8', '##7', '##3', '1', '##3', '3', '0',
  ]  # fmt: skip
  assert tok.decode(ids) == '1873 13 3 0'
  # Digits need no corpus: any number encodes without <unk>.
  assert tok.unk_id not in tok.encode('9876543210')


def test_vocabulary_order_is_deterministic():
  a = WordTokenizer.build(CORPUS)
  b = WordTokenizer.build(list(reversed(CORPUS)))
  assert a.hf_tokenizer.get_vocab() == b.hf_tokenizer.get_vocab()
  # Most frequent corpus word comes first after the fixed tokens:
  # 'Vel', 'Corp' appear 3x, '.' 3x -> ties broken alphabetically.
  first_word_id = len(CONTROL_TOKENS) + len(TAG_TOKENS) + 20
  assert a.id_to_token(first_word_id) == '.'
  assert [a.id_to_token(first_word_id + i) for i in (1, 2)] == ['Corp', 'Vel']


def test_round_trip_on_world_texts(world_tok):
  world, tok = world_tok
  texts = [q['question'] for q in world.questions]
  texts += [d['contents'] for d in world.documents]
  for t in texts:
    ids = tok.encode(t, strict=True)
    dec = tok.decode(ids)
    assert tok.encode(dec) == ids
    if '"' not in t:  # questions: exact text back
      assert dec == t


def test_unknown_words(tok):
  ids = tok.encode('Kalo flew to Mars')
  assert ids.count(tok.unk_id) == 3
  assert tok.unknown_words('Kalo flew to Mars') == ['flew', 'to', 'Mars']
  with pytest.raises(ValueError, match=r"unknown words \['flew'"):
    tok.encode('Kalo flew', strict=True)
  strict_tok = WordTokenizer.build(CORPUS, strict=True)
  with pytest.raises(ValueError, match='strict'):
    strict_tok.encode('Mars')
  # A literal <unk> is not an unknown word.
  assert strict_tok.encode('<unk>') == [3]


def test_encode_batch_padding_and_masks(tok):
  texts = ['Kalo Varen', 'Vel Corp was founded']
  right = tok.encode_batch(texts, 6, add_eos=True)
  a, b = tok.encode(texts[0]), tok.encode(texts[1])
  assert right.ids.dtype == np.int32 and right.mask.dtype == bool
  np.testing.assert_array_equal(right.ids[0], a + [2, 0, 0, 0])
  np.testing.assert_array_equal(right.ids[1], b + [2, 0])
  np.testing.assert_array_equal(right.mask.sum(1), [3, 5])
  left = tok.encode_batch(texts, 6, left_pad=True, add_bos=True)
  np.testing.assert_array_equal(left.ids[0], [0, 0, 0, 1] + a)
  np.testing.assert_array_equal(
    left.mask[0], [False, False, False, True, True, True]
  )
  assert tok.decode_batch(left.ids) == texts


def test_encode_batch_never_truncates_silently(tok):
  text = 'Vel Corp was founded in 1873.'  # 10 tokens
  with pytest.raises(ValueError, match=r'texts\[0\] has 10 tokens > max_len'):
    tok.encode_batch([text], 4)
  ids = tok.encode(text)
  r = tok.encode_batch([text], 4, truncate='right')
  np.testing.assert_array_equal(r.ids[0], ids[:4])
  lft = tok.encode_batch([text], 4, truncate='left', left_pad=True)
  np.testing.assert_array_equal(lft.ids[0], ids[-4:])
  assert r.mask.all() and lft.mask.all()
  with pytest.raises(ValueError, match='truncate must be'):
    tok.encode_batch([text], 4, truncate='middle')
  with pytest.raises(ValueError, match='max_len'):
    tok.encode_batch([text], 0)
  with pytest.raises(TypeError):
    tok.encode_batch(text, 20)


def test_decode_skip_special(tok):
  ids = [1, tok.token_id('<answer>'), *tok.encode('Vel Corp'), 2, 0, 0]
  assert tok.decode(ids) == '<answer> Vel Corp'
  assert tok.decode(ids, skip_special=False) == (
    '<bos> <answer> Vel Corp <eos> <pad> <pad>'
  )
  with pytest.raises(ValueError, match='outside'):
    tok.decode([tok.vocab_size])


def test_save_load_identical(tmp_path, world_tok):
  world, tok = world_tok
  path = tok.save(tmp_path)
  assert os.path.basename(path) == 'tokenizer.json'
  loaded = WordTokenizer.load(tmp_path)
  assert loaded.vocab_size == tok.vocab_size
  assert loaded.tags == tok.tags
  trace = synthetic.golden_search_trace(
    world.questions[0], world.document_by_id
  )
  for t in [trace] + [q['question'] for q in world.questions[:20]]:
    assert loaded.encode(t) == tok.encode(t)
  # A plain Hugging Face load of tokenizer.json gives the same ids.
  hf = tokenizers.Tokenizer.from_file(path)
  assert hf.encode(trace).ids == tok.encode(trace)
  with open(path) as f:
    assert json.load(f)['model']['type'] == 'WordLevel'
  # Without the metadata file, tags are recovered from the added tokens.
  os.remove(tmp_path / 'word_tokenizer.json')
  assert WordTokenizer.load(tmp_path).tags == tok.tags
  with pytest.raises(FileNotFoundError, match='tokenizer.json'):
    WordTokenizer.load(tmp_path / 'missing')


def test_extra_tokens():
  tok = WordTokenizer.build(CORPUS, extra_tokens=('<sep>', '<think>'))
  assert tok.tags[-1] == '<sep>' and tok.tags.count('<think>') == 1
  assert tok.tokenize('a<sep>b')[1] == '<sep>'
  with pytest.raises(ValueError, match='must look like a tag'):
    WordTokenizer.build(CORPUS, extra_tokens=('sep',))
  with pytest.raises(ValueError, match='control token'):
    WordTokenizer.build(CORPUS, extra_tokens=('<pad>',))
  with pytest.raises(TypeError, match='not a string'):
    WordTokenizer.build('Kalo Varen')
