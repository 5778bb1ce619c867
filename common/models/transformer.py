"""Decoder-only transformer LM (Llama/Qwen2 architecture) in Flax NNX.

Pre-norm blocks with RMSNorm, rotary position embeddings in the rotate-half
convention of HF Llama/Qwen2, grouped-query causal attention with an optional
KV cache, and a SwiGLU MLP. Kernels are `(d_in, d_out)`. Parameter paths are
regex-friendly:

  embed/embedding                          [V, D]
  layers/{i}/input_layernorm/scale         [D]
  layers/{i}/attn/{q,k,v,o}_proj/kernel    [D, H*Dh] ... [H*Dh, D]
  layers/{i}/attn/{q,k,v}_proj/bias        (qkv_bias only)
  layers/{i}/post_attention_layernorm/scale
  layers/{i}/mlp/{gate,up}_proj/kernel     [D, F]
  layers/{i}/mlp/down_proj/kernel          [F, D]
  norm/scale                               [D]
  lm_head/kernel                           [D, V] (untied only)

Activations can be captured by name (`capture=`) and a zero
`mlp_hidden_delta` can be added to the MLP hidden activations so that
`jax.grad` with respect to it is exactly dL/d(mlp_hidden) (see
`Transformer.__call__`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common.models import config as config_lib
from common.models import kv_cache as kv_lib

CAPTURE_NAMES = ('attn_in', 'attn_out', 'mlp_in', 'mlp_hidden', 'residual')
_INIT = nnx.initializers.normal(stddev=0.02)
_REMAT_POLICIES = {
  'full': jax.checkpoint_policies.nothing_saveable,
  'dots': jax.checkpoint_policies.dots_saveable,
  'dots_no_batch': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class LMOutput(NamedTuple):
  """Result of a forward pass.

  Attributes:
    logits: `[B, T, V]` float32.
    cache: the updated `KVCache`, or None if none was given.
    hidden: `[B, T, D]` final normed hidden states (input of the LM head).
    captured: name -> `[L, B, T, ...]` activations stacked over layers.
  """

  logits: jax.Array
  cache: kv_lib.KVCache | None
  hidden: jax.Array
  captured: dict[str, jax.Array]


class RMSNorm(nnx.Module):
  """RMSNorm: `x / sqrt(mean(x^2) + eps) * scale`, statistics in float32."""

  def __init__(self, dim: int, eps: float, *, param_dtype=jnp.float32):
    self.eps = eps
    self.scale = nnx.Param(jnp.ones((dim,), param_dtype))

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    y = (x32 * jax.lax.rsqrt(var + self.eps)).astype(x.dtype)
    return y * self.scale[...].astype(x.dtype)


def rope_inv_freq(config: config_lib.LMConfig) -> np.ndarray:
  """Inverse frequencies `[Dh/2]` (float32), with Llama-3 scaling if set."""
  dh = config.head_dim
  inv = 1.0 / (
    config.rope_theta ** (np.arange(0, dh, 2, dtype=np.float64) / dh)
  )
  rs = config.rope_scaling
  if rs is not None:
    # HF `_compute_llama3_parameters`.
    old = rs.original_max_position_embeddings
    low_wavelen = old / rs.low_freq_factor
    high_wavelen = old / rs.high_freq_factor
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > low_wavelen, inv / rs.factor, inv)
    smooth = (old / wavelen - rs.low_freq_factor) / (
      rs.high_freq_factor - rs.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    inv = np.where(medium, smoothed, scaled)
  return inv.astype(np.float32)


def rope_cos_sin(
  positions: jax.Array, inv_freq: np.ndarray
) -> tuple[jax.Array, jax.Array]:
  """cos/sin tables `[B, T, Dh]` for positions `[B, T]` (rotate-half)."""
  angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
  angles = jnp.concatenate([angles, angles], axis=-1)
  return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotates `x` `[B, T, H, Dh]` by position (HF `rotate_half` form)."""
  x32 = x.astype(jnp.float32)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
  out = x32 * cos[:, :, None, :] + rotated * sin[:, :, None, :]
  return out.astype(x.dtype)


def _linear(d_in, d_out, config, rngs, use_bias=False):
  return nnx.Linear(
    d_in,
    d_out,
    use_bias=use_bias,
    kernel_init=_INIT,
    bias_init=nnx.initializers.zeros_init(),
    dtype=config.jnp_dtype,
    param_dtype=config.jnp_param_dtype,
    rngs=rngs,
  )


def _fused_linear(x: jax.Array, layers) -> jax.Array:
  """`concat([l(x) for l in layers], -1)` as one matmul (same dtypes).

  The kernels are concatenated transposed, `[F, D]`, and contracted on
  their last axis, so that autodiff's weight gradient is `dY^T X` `[F, D]`
  (then a transpose of the small result): XLA:CPU otherwise materialised
  the `[N, F]` output gradient transposed for `X^T dY`, and the training
  step spent ~10% more CPU time (`experiments/benchmarks`, README).
  """
  first = layers[0]
  dtype = first.dtype or x.dtype
  wt = jnp.concatenate([lin.kernel[...].T for lin in layers], axis=0)
  y = jnp.einsum('...d,fd->...f', x.astype(dtype), wt.astype(dtype))
  if first.bias is not None:
    bias = jnp.concatenate([lin.bias[...] for lin in layers])
    y = y + bias.astype(dtype)
  return y


class Attention(nnx.Module):
  """Grouped-query causal self-attention with rotary embeddings."""

  def __init__(self, config: config_lib.LMConfig, *, rngs: nnx.Rngs):
    d, h, hkv, dh = (
      config.d_model,
      config.n_heads,
      config.n_kv_heads,
      config.head_dim,
    )
    self.n_heads, self.n_kv_heads, self.head_dim = h, hkv, dh
    self.q_proj = _linear(d, h * dh, config, rngs, config.qkv_bias)
    self.k_proj = _linear(d, hkv * dh, config, rngs, config.qkv_bias)
    self.v_proj = _linear(d, hkv * dh, config, rngs, config.qkv_bias)
    self.o_proj = _linear(h * dh, d, config, rngs)

  def __call__(self, x, cos, sin, allowed, kv=None):
    """Attention of `x` `[B, T, D]`.

    Args:
      x: normed block input `[B, T, D]`.
      cos, sin: rotary tables `[B, T, Dh]`.
      allowed: `[B, T, K]` bool, which keys each query may attend to (K = T
        without cache, K = S with cache).
      kv: None, or `(keys, values, layer, write_slots)` with the cache
        buffers `[L, B, S, Hkv, Dh]`; this chunk's keys/values are written
        there and attention runs over the whole cache row.

    Returns:
      `(out [B, T, D], o_proj input [B, T, H*Dh], (keys, values) or None)`.
    """
    b, t, _ = x.shape
    h, hkv, dh = self.n_heads, self.n_kv_heads, self.head_dim
    # One matmul for q, k and v (kernels concatenated at call time; the
    # parameters stay separate): fewer, larger dots and, in the backward
    # pass, one input transpose instead of three.
    y = _fused_linear(x, (self.q_proj, self.k_proj, self.v_proj))
    q, k, v = jnp.split(y, [h * dh, (h + hkv) * dh], axis=-1)
    q = apply_rope(q.reshape(b, t, h, dh), cos, sin)
    k = apply_rope(k.reshape(b, t, hkv, dh), cos, sin)
    v = v.reshape(b, t, hkv, dh)
    new_kv = None
    if kv is not None:
      keys, values, layer, slots = kv
      keys = kv_lib.write(keys, layer, slots, k)
      values = kv_lib.write(values, layer, slots, v)
      k, v = keys[layer], values[layer]
      new_kv = (keys, values)
    # Grouped-query attention as XLA's fused pattern: logits and softmax in
    # float32, disallowed keys masked (a query with none gets a uniform,
    # finite row: padding outputs are meaningless but finite).
    out = jax.nn.dot_product_attention(
      q, k, v, mask=allowed[:, None], implementation='xla'
    )
    o_in = out.reshape(b, t, self.n_heads * dh).astype(x.dtype)
    return self.o_proj(o_in), o_in, new_kv


class MLP(nnx.Module):
  """SwiGLU MLP: `down(silu(gate(x)) * up(x))`."""

  def __init__(self, config: config_lib.LMConfig, *, rngs: nnx.Rngs):
    d, f = config.d_model, config.d_ff
    self.gate_proj = _linear(d, f, config, rngs)
    self.up_proj = _linear(d, f, config, rngs)
    self.down_proj = _linear(f, d, config, rngs)

  def __call__(self, x, delta=None):
    """Returns `(out [B, T, D], hidden [B, T, F])`; `delta` adds to hidden."""
    f = self.gate_proj.out_features
    gate_up = _fused_linear(x, (self.gate_proj, self.up_proj))
    hidden = jax.nn.silu(gate_up[..., :f]) * gate_up[..., f:]
    if delta is not None:
      hidden = hidden + delta.astype(hidden.dtype)
    return self.down_proj(hidden), hidden


class Block(nnx.Module):
  """Pre-norm decoder block: attention then MLP, each with a residual."""

  def __init__(self, config: config_lib.LMConfig, *, rngs: nnx.Rngs):
    pd = config.jnp_param_dtype
    self.input_layernorm = RMSNorm(
      config.d_model, config.rms_norm_eps, param_dtype=pd
    )
    self.attn = Attention(config, rngs=rngs)
    self.post_attention_layernorm = RMSNorm(
      config.d_model, config.rms_norm_eps, param_dtype=pd
    )
    self.mlp = MLP(config, rngs=rngs)

  def __call__(self, x, cos, sin, allowed, kv=None, delta=None):
    attn_in = self.input_layernorm(x)
    a, attn_out, new_kv = self.attn(attn_in, cos, sin, allowed, kv)
    x = x + a
    mlp_in = self.post_attention_layernorm(x)
    m, mlp_hidden = self.mlp(mlp_in, delta)
    x = x + m
    acts = dict(
      attn_in=attn_in,
      attn_out=attn_out,
      mlp_in=mlp_in,
      mlp_hidden=mlp_hidden,
      residual=x,
    )
    return x, new_kv, acts


def _check_shapes(
  tokens, positions, attention_mask, cache, capture, delta, config
):
  if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
    raise ValueError(
      f'tokens must be an integer array [B, T], got shape {tokens.shape} '
      f'dtype {tokens.dtype}.'
    )
  for name, arr in (
    ('positions', positions),
    ('attention_mask', attention_mask),
  ):
    if arr is not None and arr.shape != tokens.shape:
      raise ValueError(
        f'{name} must have the shape of tokens {tokens.shape}, got {arr.shape}.'
      )
  unknown = [c for c in capture if c not in CAPTURE_NAMES]
  if unknown or isinstance(capture, str):
    raise ValueError(
      f'capture must be a tuple of names among {CAPTURE_NAMES}, got '
      f'{capture!r}.'
    )
  b, t = tokens.shape
  if delta is not None:
    want = (config.n_layers, b, t, config.d_ff)
    if delta.shape != want:
      raise ValueError(
        f'mlp_hidden_delta must have shape [L, B, T, d_ff] = {want}, got '
        f'{delta.shape}.'
      )
  if cache is not None:
    want = (config.n_layers, b, None, config.n_kv_heads, config.head_dim)
    got = cache.keys.shape
    if len(got) != 5 or got[:2] != want[:2] or got[3:] != want[3:]:
      raise ValueError(
        f'cache.keys must have shape [L, B, S, Hkv, Dh] = '
        f'[{config.n_layers}, {b}, S, {config.n_kv_heads}, '
        f'{config.head_dim}], got {got}.'
      )


class Transformer(nnx.Module):
  """Decoder-only LM: embedding, `n_layers` blocks, final norm, LM head."""

  def __init__(self, config: config_lib.LMConfig, *, rngs: nnx.Rngs):
    config.validate()
    self.config = config
    self.embed = nnx.Embed(
      config.vocab_size,
      config.d_model,
      embedding_init=_INIT,
      dtype=config.jnp_dtype,
      param_dtype=config.jnp_param_dtype,
      rngs=rngs,
    )
    blocks = [Block(config, rngs=rngs) for _ in range(config.n_layers)]
    if config.scan_layers:
      # One Block whose parameters carry a leading [L] axis; the same
      # random draws, in the same order, as the unrolled layout.
      graphdef = nnx.graphdef(blocks[0])
      states = [nnx.state(b) for b in blocks]
      stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
      self.layers = nnx.merge(graphdef, stacked)
    else:
      self.layers = nnx.List(blocks)
    self.norm = RMSNorm(
      config.d_model, config.rms_norm_eps, param_dtype=config.jnp_param_dtype
    )
    if not config.tie_embeddings:
      self.lm_head = _linear(config.d_model, config.vocab_size, config, rngs)

  def logits_from_hidden(self, hidden: jax.Array) -> jax.Array:
    """LM head: `[B, T, D]` final normed hidden -> `[B, T, V]` float32."""
    if self.config.tie_embeddings:
      w = self.embed.embedding[...].astype(hidden.dtype)
      return jnp.einsum(
        'btd,vd->btv', hidden, w, preferred_element_type=jnp.float32
      )
    w = self.lm_head.kernel[...].astype(hidden.dtype)
    return jnp.einsum(
      'btd,dv->btv', hidden, w, preferred_element_type=jnp.float32
    )

  def __call__(
    self,
    tokens: jax.Array,
    *,
    positions: jax.Array | None = None,
    attention_mask: jax.Array | None = None,
    cache: kv_lib.KVCache | None = None,
    capture: tuple[str, ...] = (),
    mlp_hidden_delta: jax.Array | None = None,
  ) -> LMOutput:
    """Forward pass.

    Args:
      tokens: `[B, T]` int token ids.
      positions: `[B, T]` rotary positions. Default: the number of real
        tokens before each token (`cumsum(mask) - 1`, plus the row's cache
        length), so left-padded rows start at 0.
      attention_mask: `[B, T]` bool, True for real tokens. Padding tokens
        are never attended to (and never written to the cache); their own
        outputs are finite but meaningless. Default: all True.
      cache: optional `KVCache`. The chunk's real tokens are appended at each
        row's own length and every query attends to all valid cache slots up
        to its own slot. Returned updated in `LMOutput.cache`. Rows that
        would overflow the capacity raise (eager) or get NaN logits (jit).
      capture: names among `CAPTURE_NAMES` to return, each stacked over
        layers `[L, B, T, ...]`: `attn_in` (normed input of q/k/v),
        `attn_out` (input of o_proj, `[.., H*Dh]`), `mlp_in` (normed input
        of gate/up), `mlp_hidden` (`silu(gate) * up`, input of down_proj,
        `[.., d_ff]`), `residual` (block output).
      mlp_hidden_delta: optional `[L, B, T, d_ff]` added to every layer's
        `mlp_hidden`. Pass zeros and differentiate with respect to it to get
        exactly dL/d(mlp_hidden):
        `jax.grad(lambda d: loss(model(x, mlp_hidden_delta=d)))(zeros)`.

    Returns:
      `LMOutput(logits [B, T, V] float32, cache, hidden [B, T, D],
      captured)`.
    """
    config = self.config
    tokens = jnp.asarray(tokens)
    capture = tuple(capture)
    _check_shapes(
      tokens,
      positions,
      attention_mask,
      cache,
      capture,
      mlp_hidden_delta,
      config,
    )
    b, t = tokens.shape
    if attention_mask is None:
      mask = jnp.ones((b, t), bool)
    else:
      mask = jnp.asarray(attention_mask).astype(bool)

    if cache is None:
      query_pos = jnp.cumsum(mask, axis=1, dtype=jnp.int32) - 1
      causal = jnp.tril(jnp.ones((t, t), bool))
      allowed = causal[None] & mask[:, None, :]
    else:
      s = cache.capacity
      slots, query_pos, new_lengths = kv_lib.chunk_slots(cache.lengths, mask, s)
      overflow = kv_lib.check_capacity(new_lengths, s)
      valid = kv_lib.mark_valid(cache.valid, slots)
      key_slot = jnp.arange(s, dtype=jnp.int32)
      allowed = valid[:, None, :] & (
        key_slot[None, None, :] <= query_pos[:, :, None]
      )
      keys, values = cache.keys, cache.values
    if positions is None:
      positions = jnp.maximum(query_pos, 0)
    cos, sin = rope_cos_sin(positions, rope_inv_freq(config))

    x = self.embed(tokens).astype(config.jnp_dtype)
    if cache is None:
      keys = values = slots = None

    def block_fn(block_state, x, layer, keys, values, delta):
      block = nnx.merge(block_graphdef, block_state)
      kv = None if keys is None else (keys, values, layer, slots)
      x, new_kv, layer_acts = block(x, cos, sin, allowed, kv, delta)
      if new_kv is not None:
        keys, values = new_kv
      return x, keys, values, {n: layer_acts[n] for n in capture}

    if config.remat != 'none':
      block_fn = jax.checkpoint(
        block_fn,
        policy=_REMAT_POLICIES[config.remat],
        prevent_cse=not config.scan_layers,
      )
    if config.scan_layers:
      block_graphdef, stacked = nnx.split(self.layers)

      def body(carry, xs):
        x, keys, values = carry
        block_state, layer, delta = xs
        x, keys, values, layer_acts = block_fn(
          block_state, x, layer, keys, values, delta
        )
        return (x, keys, values), layer_acts

      layer_ids = jnp.arange(config.n_layers, dtype=jnp.int32)
      (x, keys, values), captured = jax.lax.scan(
        body, (x, keys, values), (stacked, layer_ids, mlp_hidden_delta)
      )
    else:
      acts = {name: [] for name in capture}
      for i, layer in enumerate(self.layers):
        delta = None if mlp_hidden_delta is None else mlp_hidden_delta[i]
        if config.remat == 'none':  # direct call: no split/merge per layer
          kv = None if keys is None else (keys, values, i, slots)
          x, new_kv, layer_acts = layer(x, cos, sin, allowed, kv, delta)
          if new_kv is not None:
            keys, values = new_kv
        else:
          block_graphdef, block_state = nnx.split(layer)
          x, keys, values, layer_acts = block_fn(
            block_state, x, i, keys, values, delta
          )
        for name in capture:
          acts[name].append(layer_acts[name])
      captured = {name: jnp.stack(v) for name, v in acts.items()}
    hidden = self.norm(x)
    logits = self.logits_from_hidden(hidden)

    new_cache = None
    if cache is not None:
      logits = jnp.where(overflow[:, None, None], jnp.nan, logits)
      new_cache = kv_lib.KVCache(
        keys=keys, values=values, lengths=new_lengths, valid=valid
      )
    return LMOutput(
      logits=logits, cache=new_cache, hidden=hidden, captured=captured
    )
