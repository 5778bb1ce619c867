"""Tests of the NNX decoder LM: shapes, paths, RoPE, masks, capture, grads."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common import models
from common.models import transformer
from tests import tolerances as tol


@pytest.fixture(scope='module')
def tiny():
  cfg = models.get_preset('tiny')
  return cfg, models.Transformer(cfg, rngs=nnx.Rngs(0))


def _logits(model, tokens, **kw):
  """Jitted forward (eager NNX dispatch is slow op by op)."""
  return jax.jit(lambda m, t: m(t, **kw).logits)(model, tokens)


def _paths(model):
  return [
    '/'.join(map(str, p))
    for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))
  ]


def test_param_paths_are_regex_friendly(tiny):
  cfg, model = tiny
  paths = _paths(model)
  mlp = [
    p for p in paths if re.fullmatch(r'.*mlp/(gate|up|down)_proj/kernel', p)
  ]
  assert len(mlp) == 3 * cfg.n_layers
  assert 'layers/1/mlp/gate_proj/kernel' in paths
  assert 'layers/0/attn/q_proj/kernel' in paths
  assert 'embed/embedding' in paths and 'norm/scale' in paths
  assert not any('lm_head' in p for p in paths)  # tied
  state = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
  assert state[('layers', 0, 'mlp', 'down_proj', 'kernel')].shape == (
    cfg.d_ff,
    cfg.d_model,
  )


def test_untied_and_bias_paths():
  cfg = models.get_preset('tiny', tie_embeddings=False, qkv_bias=True)
  paths = _paths(models.Transformer(cfg, rngs=nnx.Rngs(0)))
  assert 'lm_head/kernel' in paths
  assert 'layers/0/attn/k_proj/bias' in paths
  assert 'layers/0/attn/o_proj/bias' not in paths


@pytest.mark.parametrize(
  'name,count',
  [
    ('qwen2.5-0.5b', 494_032_768),
    ('qwen2.5-7b', 7_615_616_512),
    ('llama-3.2-1b', 1_235_814_400),
    ('llama-3.1-8b', 8_030_261_248),
  ],
)
def test_preset_parameter_counts_match_published(name, count):
  cfg = models.get_preset(name)
  abstract = nnx.eval_shape(lambda: models.Transformer(cfg, rngs=nnx.Rngs(0)))
  leaves = jax.tree.leaves(nnx.state(abstract, nnx.Param))
  assert sum(math.prod(x.shape) for x in leaves) == count


def test_config_errors():
  with pytest.raises(KeyError, match='known presets: .*tiny'):
    models.get_preset('gpt-5')
  with pytest.raises(ValueError, match='n_kv_heads'):
    models.get_preset('tiny', n_kv_heads=3)
  with pytest.raises(ValueError, match='vocab_size'):
    models.get_preset('tiny', vocab_size=0)
  with pytest.raises(ValueError, match='dtype'):
    models.get_preset('tiny', dtype='float8')
  assert models.get_preset('tiny', d_model=128).head_dim == 32


def test_rmsnorm_hand_case():
  norm = transformer.RMSNorm(2, eps=0.0)
  norm.scale[...] = jnp.array([1.0, 2.0])
  y = norm(jnp.array([[3.0, 4.0]]))
  rms = math.sqrt((9 + 16) / 2)
  tol.assert_close(y, [[3 / rms, 8 / rms]])  # a mean, rsqrt and products


def test_rope_rotate_half_hand_case():
  # Dh = 4: pairs (x0, x2) rotate with freq 1, (x1, x3) with theta^-1/2.
  cfg = models.LMConfig(
    vocab_size=4,
    d_model=4,
    n_layers=1,
    n_heads=1,
    n_kv_heads=1,
    d_ff=4,
    rope_theta=100.0,
  )
  inv = transformer.rope_inv_freq(cfg)
  tol.assert_close(inv, [1.0, 0.1], tol.FEW_OPS)  # float32 pow
  cos, sin = transformer.rope_cos_sin(jnp.array([[3]]), inv)
  x = jnp.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)
  y = np.asarray(transformer.apply_rope(x, cos, sin)).ravel()
  a, b = 3.0, 0.3
  want = [
    1 * math.cos(a) - 3 * math.sin(a),
    2 * math.cos(b) - 4 * math.sin(b),
    3 * math.cos(a) + 1 * math.sin(a),
    4 * math.cos(b) + 2 * math.sin(b),
  ]
  tol.assert_close(y, want, tol.FEW_OPS)  # float32 cos/sin of 3


def test_llama3_rope_scaling_hand_case():
  scaling = models.RopeScaling(
    factor=8.0,
    low_freq_factor=1.0,
    high_freq_factor=4.0,
    original_max_position_embeddings=8192,
  )
  cfg = models.get_preset('llama-3.1-8b')
  assert cfg.rope_scaling == scaling
  inv = transformer.rope_inv_freq(cfg)
  base = 1.0 / 500000.0 ** (np.arange(0, 128, 2) / 128)
  wavelen = 2 * math.pi / base
  high = wavelen < 8192 / 4
  low = wavelen > 8192
  # Frequencies span 1 to 1e-6, each a float32 power (exp of a product up
  # to 13, rounded): purely relative error, no cancellation, so no atol.
  tol.assert_close(inv[high], base[high], tol.FEW_OPS, scale=0.0)
  tol.assert_close(inv[low], base[low] / 8, tol.FEW_OPS, scale=0.0)
  i = np.nonzero(~high & ~low)[0][0]
  s = (8192 / wavelen[i] - 1.0) / 3.0
  tol.assert_close(
    inv[i], (1 - s) * base[i] / 8 + s * base[i], tol.FEW_OPS, scale=0.0
  )


def test_causal_and_left_padding_invariance(tiny):
  cfg, model = tiny
  rng = np.random.default_rng(0)
  seq = rng.integers(0, cfg.vocab_size, (1, 7))
  fwd = jax.jit(lambda x, a=None: model(x, attention_mask=a).logits)
  ref = fwd(jnp.asarray(seq))
  # Future tokens do not change earlier logits.
  seq2 = seq.copy()
  seq2[0, 5:] = (seq2[0, 5:] + 1) % cfg.vocab_size
  out2 = fwd(jnp.asarray(seq2))
  # The same program; the changed tokens are masked out of every earlier
  # row (bit-identical in practice; a few ops of slack).
  tol.assert_close(out2[:, :5], ref[:, :5], tol.FEW_OPS)
  assert not np.allclose(out2[:, 5:], ref[:, 5:])
  # Left padding with garbage tokens changes nothing for real tokens.
  padded = np.concatenate([rng.integers(0, cfg.vocab_size, (1, 3)), seq], 1)
  mask = np.array([[False] * 3 + [True] * 7])
  out = fwd(jnp.asarray(padded), jnp.asarray(mask))
  # A wider sequence: another float32 program through the model.
  tol.assert_close(out[:, 3:], ref, tol.REDUCTION)
  assert np.isfinite(np.asarray(out)).all()


def _ragged_chunks(model, cfg, seqs, chunk_lens, pad_left, capacity):
  """Feeds each row's sequence chunk by chunk; returns per-row logits."""
  b = len(seqs)
  cache = models.init_cache(cfg, b, capacity)
  step = jax.jit(lambda m, t, a, c: m(t, attention_mask=a, cache=c))
  got = [[] for _ in range(b)]
  starts = [0] * b
  width = max(max(cl) for cl in chunk_lens) + 1  # one shape: one compile
  for chunk in range(len(chunk_lens[0])):
    toks = np.zeros((b, width), np.int32)
    mask = np.zeros((b, width), bool)
    for r in range(b):
      n = chunk_lens[r][chunk]
      part = seqs[r][starts[r] : starts[r] + n]
      lo = width - n if pad_left[r] else 0
      toks[r, lo : lo + n] = part
      mask[r, lo : lo + n] = True
    out = step(model, jnp.asarray(toks), jnp.asarray(mask), cache)
    cache = out.cache
    for r in range(b):
      got[r].append(np.asarray(out.logits[r])[mask[r]])
      starts[r] += chunk_lens[r][chunk]
  return [np.concatenate(g) for g in got], cache


def test_kv_cache_ragged_chunks_equal_full_forward(tiny):
  cfg, model = tiny
  rng = np.random.default_rng(1)
  chunk_lens = [[3, 1, 4, 0], [5, 2, 1, 3], [1, 1, 1, 2]]
  seqs = [rng.integers(0, cfg.vocab_size, sum(cl)) for cl in chunk_lens]
  got, cache = _ragged_chunks(
    model, cfg, seqs, chunk_lens, pad_left=[True, False, True], capacity=16
  )
  np.testing.assert_array_equal(cache.lengths, [8, 11, 5])
  np.testing.assert_array_equal(cache.valid.sum(1), [8, 11, 5])
  # Reference: one forward over each whole sequence. Rows are right-padded
  # to a common length; causality keeps padding after a row's end from
  # touching its real tokens (tested above).
  t = max(len(seq) for seq in seqs)
  full_toks = np.zeros((len(seqs), t), np.int32)
  for r, seq in enumerate(seqs):
    full_toks[r, : len(seq)] = seq
  full = jax.jit(lambda m, x: m(x).logits)(model, jnp.asarray(full_toks))
  # Cached vs full attention: two float32 programs through the model.
  for r, seq in enumerate(seqs):
    tol.assert_close(got[r], full[r, : len(seq)], tol.REDUCTION)


def test_cache_overflow_raises_eagerly_and_poisons_under_jit(tiny):
  cfg, model = tiny
  cache = models.init_cache(cfg, 2, 4)
  toks = jnp.ones((2, 5), jnp.int32)
  mask = jnp.array([[True] * 3 + [False] * 2, [True] * 5])
  with pytest.raises(ValueError, match=r'rows \[1\].*capacity is 4'):
    model(toks, attention_mask=mask, cache=cache)
  out = jax.jit(lambda m, c: m(toks, attention_mask=mask, cache=c))(
    model, cache
  )
  assert np.isfinite(np.asarray(out.logits[0])).all()
  assert np.isnan(np.asarray(out.logits[1])).all()


def test_capture_values(tiny):
  cfg, model = tiny
  toks = jnp.asarray(np.random.default_rng(2).integers(0, 256, (2, 5)))
  out = jax.jit(lambda m, t: m(t, capture=models.CAPTURE_NAMES))(model, toks)
  n_l, b, t = cfg.n_layers, 2, 5
  c = out.captured
  assert c['mlp_hidden'].shape == (n_l, b, t, cfg.d_ff)
  assert c['attn_out'].shape == (n_l, b, t, cfg.n_heads * cfg.head_dim)
  for name in ('attn_in', 'mlp_in', 'residual'):
    assert c[name].shape == (n_l, b, t, cfg.d_model)
  mlp = model.layers[1].mlp
  want = jax.nn.silu(c['mlp_in'][1] @ mlp.gate_proj.kernel[...]) * (
    c['mlp_in'][1] @ mlp.up_proj.kernel[...]
  )
  # One layer's ops recomputed outside the jitted forward: a 64-term
  # matmul or a norm, summed in another order.
  tol.assert_close(c['mlp_hidden'][1], want, tol.FEW_OPS)
  tol.assert_close(model.norm(c['residual'][-1]), out.hidden, tol.FEW_OPS)
  tol.assert_close(
    model.layers[0].input_layernorm(model.embed(toks)),
    c['attn_in'][0],
    tol.FEW_OPS,
  )
  with pytest.raises(ValueError, match='capture must be'):
    model(toks, capture=('mlp_out',))


def test_mlp_hidden_delta_gives_activation_gradient(tiny):
  cfg, model = tiny
  toks = jnp.asarray(np.random.default_rng(3).integers(0, 256, (2, 5)))
  zeros = jnp.zeros((cfg.n_layers, 2, 5, cfg.d_ff))

  @jax.jit
  def loss(delta):
    logits = model(toks, mlp_hidden_delta=delta).logits
    return jnp.sum(jax.nn.log_softmax(logits)[..., 7])

  grad = jax.jit(jax.grad(loss))(zeros)
  assert grad.shape == zeros.shape
  # A zero delta adds 0.0 to the hidden activations: exact (h + 0 == h).
  np.testing.assert_array_equal(
    _logits(model, toks, mlp_hidden_delta=zeros), _logits(model, toks)
  )
  # Directional finite difference: rtol for the O(eps^2) truncation, atol
  # for the float32 rounding of the two losses.
  u = jax.random.normal(jax.random.key(0), zeros.shape)
  eps = 1e-2
  fd = (loss(eps * u) - loss(-eps * u)) / (2 * eps)
  np.testing.assert_allclose(
    jnp.vdot(grad, u), fd, rtol=1e-2, atol=tol.fd_atol(loss(zeros), eps)
  )
  # Last layer exactly: h feeds only down_proj, so
  # dL/dh = dL/d(residual_out) @ down_proj^T.
  res = jax.jit(lambda m, t: m(t, capture=('residual',)))(model, toks)
  res = res.captured['residual'][-1]

  def loss_from_residual(r):
    logits = model.logits_from_hidden(model.norm(r))
    return jnp.sum(jax.nn.log_softmax(logits)[..., 7])

  g_res = jax.jit(jax.grad(loss_from_residual))(res)
  want = g_res @ model.layers[-1].mlp.down_proj.kernel[...].T
  # Two float32 backward programs (whole model vs from the residual).
  tol.assert_close(grad[-1], want, tol.REDUCTION)
  with pytest.raises(ValueError, match='mlp_hidden_delta must have shape'):
    model(toks, mlp_hidden_delta=zeros[:, :1])


def test_bad_inputs(tiny):
  _, model = tiny
  with pytest.raises(ValueError, match='tokens must be an integer'):
    model(jnp.ones((2, 3)))
  with pytest.raises(ValueError, match='attention_mask must have the shape'):
    model(jnp.ones((2, 3), jnp.int32), attention_mask=jnp.ones((2, 4), bool))


def test_bfloat16_compute_is_close_to_float32():
  cfg32 = models.get_preset('tiny')
  m32 = models.Transformer(cfg32, rngs=nnx.Rngs(0))
  m16 = models.Transformer(cfg32.replace(dtype='bfloat16'), rngs=nnx.Rngs(0))
  toks = jnp.arange(10).reshape(2, 5)
  l32, l16 = _logits(m32, toks), _logits(m16, toks)
  assert l16.dtype == jnp.float32
  tol.assert_close(l16, l32, tol.BF16)


def test_batch_sharded_forward_equals_single_device(tiny):
  cfg, model = tiny
  devices = jax.devices()[:8]
  mesh = jax.sharding.Mesh(
    np.array(devices), ('data',), axis_types=(jax.sharding.AxisType.Auto,)
  )
  toks = jnp.asarray(np.random.default_rng(4).integers(0, 256, (8, 6)))
  mask = jnp.asarray(np.arange(6)[None] >= np.arange(8)[:, None] % 3)
  fwd = jax.jit(lambda m, t, a: m(t, attention_mask=a).logits)
  want = fwd(model, toks, mask)
  spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  got = fwd(model, jax.device_put(toks, spec), jax.device_put(mask, spec))
  assert got.sharding.spec[0] == 'data'
  # Batch 1 per device vs 8 on one: other matmul shapes, other programs.
  tol.assert_close(got, want, tol.REDUCTION)
