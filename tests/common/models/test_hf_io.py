"""Tests of Hugging Face directory I/O against an independent NumPy forward."""

import json
import math
import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
from flax import nnx

from common import models
from common.models import hf
from tests import tolerances as tol


# ---------------------------------------------------------------------------
# Independent NumPy reference of HF LlamaForCausalLM / Qwen2ForCausalLM.
# Written from the transformers modelling code, not from common.models.
# ---------------------------------------------------------------------------
def _np_inv_freq(cfg):
  dh = cfg.get('head_dim') or cfg['hidden_size'] // cfg['num_attention_heads']
  inv = 1.0 / cfg['rope_theta'] ** (np.arange(0, dh, 2) / dh)
  rs = cfg.get('rope_scaling')
  if rs:
    old = rs['original_max_position_embeddings']
    lo, hi, factor = rs['low_freq_factor'], rs['high_freq_factor'], rs['factor']
    out = []
    for f in inv:
      wavelen = 2 * math.pi / f
      if wavelen < old / hi:
        out.append(f)
      elif wavelen > old / lo:
        out.append(f / factor)
      else:
        s = (old / wavelen - lo) / (hi - lo)
        out.append((1 - s) * f / factor + s * f)
    inv = np.array(out)
  return inv, dh


def np_reference_logits(w, cfg, tokens):
  """Logits `[T, V]` (float64) of one unpadded sequence `tokens` `[T]`."""
  w = {k: np.asarray(v, np.float64) for k, v in w.items()}
  h_n, kv_n = cfg['num_attention_heads'], cfg['num_key_value_heads']
  eps = cfg['rms_norm_eps']
  inv, dh = _np_inv_freq(cfg)
  t = len(tokens)
  ang = np.outer(np.arange(t), inv)
  cos = np.cos(np.concatenate([ang, ang], -1))[:, None, :]
  sin = np.sin(np.concatenate([ang, ang], -1))[:, None, :]

  def rms(x, g):
    return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * g

  def rope(x):
    x1, x2 = x[..., : dh // 2], x[..., dh // 2 :]
    return x * cos + np.concatenate([-x2, x1], -1) * sin

  def lin(x, name, bias=False):
    y = x @ w[name + '.weight'].T
    return y + w[name + '.bias'] if bias else y

  qwen = cfg['architectures'] == ['Qwen2ForCausalLM']
  x = w['model.embed_tokens.weight'][tokens]
  for i in range(cfg['num_hidden_layers']):
    p = f'model.layers.{i}.'
    h = rms(x, w[p + 'input_layernorm.weight'])
    q = rope(lin(h, p + 'self_attn.q_proj', qwen).reshape(t, h_n, dh))
    k = rope(lin(h, p + 'self_attn.k_proj', qwen).reshape(t, kv_n, dh))
    v = lin(h, p + 'self_attn.v_proj', qwen).reshape(t, kv_n, dh)
    k = np.repeat(k, h_n // kv_n, axis=1)  # HF repeat_kv
    v = np.repeat(v, h_n // kv_n, axis=1)
    s = np.einsum('thd,shd->hts', q, k) / math.sqrt(dh)
    s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
    s = np.exp(s - s.max(-1, keepdims=True))
    s = s / s.sum(-1, keepdims=True)
    o = np.einsum('hts,shd->thd', s, v).reshape(t, h_n * dh)
    x = x + lin(o, p + 'self_attn.o_proj')
    h = rms(x, w[p + 'post_attention_layernorm.weight'])
    g = lin(h, p + 'mlp.gate_proj')
    x = x + lin(
      g / (1 + np.exp(-g)) * lin(h, p + 'mlp.up_proj'), p + 'mlp.down_proj'
    )
  x = rms(x, w['model.norm.weight'])
  head = w.get('lm_head.weight', w['model.embed_tokens.weight'])
  return x @ head.T


def _logits(model, tokens):
  """Jitted forward of one sequence `[T]` -> `[T, V]`."""
  fwd = jax.jit(lambda m, t: m(t[None]).logits[0])
  return fwd(model, jnp.asarray(tokens, jnp.int32))


def _hand_checkpoint(arch, tie, rope_scaling=None, dtype=np.float32, seed=0):
  """Config dict and tensors in HF naming, as a real HF directory holds."""
  cfg = {
    'architectures': [arch],
    'model_type': 'qwen2' if arch.startswith('Qwen2') else 'llama',
    'hidden_size': 32,
    'intermediate_size': 48,
    'num_attention_heads': 4,
    'num_key_value_heads': 2,
    'num_hidden_layers': 2,
    'vocab_size': 40,
    'rope_theta': 10000.0,
    'rms_norm_eps': 1e-6,
    'max_position_embeddings': 128,
    'tie_word_embeddings': tie,
    'hidden_act': 'silu',
    'torch_dtype': 'bfloat16' if dtype == ml_dtypes.bfloat16 else 'float32',
    'rope_scaling': rope_scaling,
  }
  rng = np.random.default_rng(seed)
  r = lambda *s: (rng.normal(size=s) * 0.2).astype(dtype)
  w = {
    'model.embed_tokens.weight': r(40, 32),
    'model.norm.weight': (1 + r(32)).astype(dtype),
  }
  if not tie:
    w['lm_head.weight'] = r(40, 32)
  for i in range(2):
    p = f'model.layers.{i}.'
    for n, s in (
      ('q', (32, 32)),
      ('k', (16, 32)),
      ('v', (16, 32)),
      ('o', (32, 32)),
    ):
      w[f'{p}self_attn.{n}_proj.weight'] = r(*s)
      if cfg['model_type'] == 'qwen2' and n != 'o':
        w[f'{p}self_attn.{n}_proj.bias'] = r(s[0])
    w[p + 'mlp.gate_proj.weight'] = r(48, 32)
    w[p + 'mlp.up_proj.weight'] = r(48, 32)
    w[p + 'mlp.down_proj.weight'] = r(32, 48)
    w[p + 'input_layernorm.weight'] = (1 + r(32)).astype(dtype)
    w[p + 'post_attention_layernorm.weight'] = (1 + r(32)).astype(dtype)
  return cfg, w


def _write(directory, cfg, w):
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, 'config.json'), 'w') as fh:
    json.dump(cfg, fh)
  safetensors.numpy.save_file(w, os.path.join(directory, 'model.safetensors'))
  return str(directory)


_LLAMA3 = {
  'rope_type': 'llama3',
  'factor': 8.0,
  'low_freq_factor': 1.0,
  'high_freq_factor': 4.0,
  'original_max_position_embeddings': 64,
}


@pytest.mark.parametrize(
  'arch,tie,scaling',
  [
    ('Qwen2ForCausalLM', True, None),
    ('LlamaForCausalLM', False, _LLAMA3),
  ],
)
def test_hand_written_checkpoint_matches_numpy_reference(
  tmp_path, arch, tie, scaling
):
  cfg, w = _hand_checkpoint(arch, tie, scaling)
  config, model = models.load_hf(_write(tmp_path, cfg, w))
  assert config.qkv_bias == (arch == 'Qwen2ForCausalLM')
  assert config.tie_embeddings == tie and config.head_dim == 8
  tokens = np.array([3, 17, 5, 39, 0, 22, 8, 11, 30, 2, 7, 19])
  want = np_reference_logits(w, cfg, tokens)
  got = _logits(model, tokens)
  # float32 model vs float64 NumPy: a matmul chain through 2 layers.
  tol.assert_close(got, want, tol.REDUCTION)
  # Loading is bit-exact: kernels are the transposed HF weights.
  np.testing.assert_array_equal(
    model.layers[1].attn.k_proj.kernel[...],
    w['model.layers.1.self_attn.k_proj.weight'].T,
  )


def test_bfloat16_checkpoint(tmp_path):
  cfg, w = _hand_checkpoint('Qwen2ForCausalLM', True, dtype=ml_dtypes.bfloat16)
  d = _write(tmp_path / 'bf16', cfg, w)
  config, model = models.load_hf(d)
  assert config.param_dtype == 'bfloat16'
  emb = model.embed.embedding[...]
  assert emb.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(emb), w['model.embed_tokens.weight'])
  # Upcast on load: exact bf16 values, float32 compute vs the reference.
  _, m32 = models.load_hf(d, dtype='float32', param_dtype='float32')
  tokens = np.arange(0, 40, 4)
  got = _logits(m32, tokens)
  tol.assert_close(got, np_reference_logits(w, cfg, tokens), tol.REDUCTION)
  # Round trip of a bf16 model is bit-exact.
  models.save_hf(model, config, str(tmp_path / 'out'))
  reread = hf.read_safetensors(str(tmp_path / 'out'))
  for name, arr in w.items():
    assert reread[name].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(reread[name], arr)


def _params(model):
  return {
    p: np.asarray(v[...])
    for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
  }


@pytest.mark.parametrize(
  'overrides,shard',
  [
    ({}, None),
    ({'tie_embeddings': False, 'qkv_bias': True}, 20_000),
  ],
)
def test_save_load_round_trip_bit_exact(tmp_path, overrides, shard):
  config = models.get_preset('tiny', **overrides)
  model = models.Transformer(config, rngs=nnx.Rngs(3))
  # Non-trivial norms and biases so that a mapping mix-up would show.
  state = nnx.state(model, nnx.Param)
  leaves, treedef = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(0), len(leaves))
  leaves = [
    x + 0.1 * jax.random.normal(k, x.shape)
    for x, k in zip(leaves, keys, strict=True)
  ]
  nnx.update(model, jax.tree.unflatten(treedef, leaves))
  paths = models.save_hf(model, config, str(tmp_path), max_shard_bytes=shard)
  if shard:
    assert len(paths) > 1
    assert os.path.exists(tmp_path / hf.INDEX_FILE)
    assert not os.path.exists(tmp_path / hf.SINGLE_FILE)
  config2, model2 = models.load_hf(str(tmp_path))
  assert config2 == config
  p1, p2 = _params(model), _params(model2)
  assert p1.keys() == p2.keys()
  for k in p1:
    np.testing.assert_array_equal(p1[k], p2[k])
  # Saved tensors follow HF conventions: (out, in) and HF names; the written
  # file also agrees with the independent NumPy forward.
  w = hf.read_safetensors(str(tmp_path))
  with open(tmp_path / 'config.json') as fh:
    cfg = json.load(fh)
  assert cfg['architectures'] == (
    ['Qwen2ForCausalLM'] if config.qkv_bias else ['LlamaForCausalLM']
  )
  assert w['model.layers.0.mlp.down_proj.weight'].shape == (64, 128)
  tokens = np.array([5, 9, 200, 31, 7])
  tol.assert_close(
    _logits(model2, tokens), np_reference_logits(w, cfg, tokens), tol.REDUCTION
  )


def test_errors_name_the_problem(tmp_path):
  with pytest.raises(FileNotFoundError, match='config.json'):
    models.load_hf(str(tmp_path))
  cfg, w = _hand_checkpoint('LlamaForCausalLM', True)
  with open(tmp_path / 'config.json', 'w') as fh:
    json.dump(cfg, fh)
  with pytest.raises(FileNotFoundError, match='model.safetensors'):
    models.load_hf(str(tmp_path))

  def load_with(cfg=cfg, **tensors):
    d = tmp_path / str(len(os.listdir(tmp_path)))
    return models.load_hf(_write(d, cfg, tensors))

  bad = dict(w)
  del bad['model.layers.1.mlp.up_proj.weight']
  with pytest.raises(
    hf.HFFormatError, match=r"missing tensors \['model.layers.1.mlp.up_proj"
  ):
    load_with(**bad)
  bad = dict(w, **{'model.layers.0.self_attn.q_proj.bias': np.zeros(32, 'f4')})
  with pytest.raises(hf.HFFormatError, match='unexpected tensors.*q_proj.bias'):
    load_with(**bad)
  bad = dict(
    w, **{'model.layers.0.self_attn.k_proj.weight': np.zeros((32, 32), 'f4')}
  )
  with pytest.raises(
    hf.HFFormatError,
    match=r"k_proj.weight' has shape \(32, 32\), expected "
    r'\(16, 32\) \(n_kv_heads=2',
  ):
    load_with(**bad)
  bad = dict(w)
  bad['model.norm.weight'] = np.full(32, np.nan, 'f4')
  with pytest.raises(
    hf.HFFormatError, match="'model.norm.weight' contains NaN"
  ):
    load_with(**bad)
  with pytest.raises(hf.HFFormatError, match="architectures=.*'GPT2LMHead"):
    load_with(dict(cfg, architectures=['GPT2LMHeadModel']), **w)
  with pytest.raises(hf.HFFormatError, match="'hidden_size' is missing"):
    load_with({k: v for k, v in cfg.items() if k != 'hidden_size'}, **w)
  with pytest.raises(hf.HFFormatError, match="rope_scaling type 'yarn'"):
    load_with(dict(cfg, rope_scaling={'rope_type': 'yarn', 'factor': 4.0}), **w)
  with pytest.raises(hf.HFFormatError, match='n_kv_heads'):
    load_with(dict(cfg, num_key_value_heads=3), **w)
  with pytest.raises(hf.HFFormatError, match='lm_head.weight differs'):
    load_with(**dict(w, **{'lm_head.weight': np.ones((40, 32), 'f4')}))


def test_preset_config_round_trips_through_hf_json():
  for name in ('qwen2.5-7b', 'llama-3.2-1b'):
    config = models.get_preset(name)
    assert models.config_from_hf(models.config_to_hf(config)) == config


def test_load_hf_tokenizer(tmp_path):
  import tokenizers

  vocab = {'[UNK]': 0, 'hello': 1, 'world': 2, '</search>': 3}
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, '[UNK]'))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  tok.save(str(tmp_path / 'tokenizer.json'))
  loaded = models.load_hf_tokenizer(str(tmp_path))
  assert loaded.encode('hello world').ids == [1, 2]
  with pytest.raises(FileNotFoundError, match='tokenizer.json'):
    models.load_hf_tokenizer(str(tmp_path / 'nope'))


def test_load_hf_matching_refuses_another_tokenizer(tmp_path):
  from common import synthetic

  tok = synthetic.build_tokenizer(extra_texts=['hello world'])
  cfg = models.get_preset(
    'tiny', vocab_size=tok.vocab_size, d_model=16, n_layers=1, d_ff=32
  )
  model = models.Transformer(cfg, rngs=nnx.Rngs(0))
  models.save_hf(model, cfg, str(tmp_path))
  vocab = tok.hf_tokenizer.get_vocab(True)
  with pytest.raises(FileNotFoundError, match='tokenizer.json'):
    models.load_hf_matching(str(tmp_path), vocab)
  tok.save(str(tmp_path))
  got_cfg, got = models.load_hf_matching(str(tmp_path), vocab)
  assert got_cfg.vocab_size == tok.vocab_size
  want = jax.tree.leaves(nnx.state(model))
  for a, b in zip(jax.tree.leaves(nnx.state(got)), want, strict=True):
    np.testing.assert_array_equal(a, b)
  other = synthetic.build_tokenizer(extra_texts=['goodbye moon'])
  with pytest.raises(ValueError, match=r'model\.hf_dir: the tokenizer in'):
    models.load_hf_matching(
      str(tmp_path), other.hf_tokenizer.get_vocab(True), 'model.hf_dir'
    )
  with pytest.raises(FileNotFoundError, match="x.hf_dir '/nope'"):
    models.load_hf_matching('/nope', vocab, 'x.hf_dir')
