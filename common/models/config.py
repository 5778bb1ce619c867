"""Configuration of the decoder-only language model, and named presets.

`LMConfig` describes a Llama/Qwen2-style decoder: RMSNorm, rotary position
embeddings (rotate-half convention), SwiGLU MLP and grouped-query attention.
Presets cover tiny CPU test models and the real shapes of the checkpoints the
papers use (Qwen2.5 0.5B-7B, Llama 3.2 1B, Llama 3.1 8B).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

_DTYPES = ('float32', 'bfloat16', 'float16')
# Rematerialisation policies of the decoder blocks (see `LMConfig.remat`).
REMAT_POLICIES = ('none', 'full', 'dots', 'dots_no_batch')


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """Llama-3 style RoPE frequency scaling (HF `rope_type: "llama3"`).

  Attributes:
    factor: frequency division factor for long wavelengths.
    low_freq_factor: wavelengths above `original_max_position_embeddings /
      low_freq_factor` are divided by `factor`.
    high_freq_factor: wavelengths below `original_max_position_embeddings /
      high_freq_factor` are kept; those in between are interpolated.
    original_max_position_embeddings: context length before scaling.
  """

  factor: float
  low_freq_factor: float
  high_freq_factor: float
  original_max_position_embeddings: int


@dataclasses.dataclass(frozen=True)
class LMConfig:
  """Shape and numerics of a decoder-only transformer LM.

  Attributes:
    vocab_size: number of token ids.
    d_model: residual stream width (HF `hidden_size`).
    n_layers: number of decoder blocks.
    n_heads: number of query heads.
    n_kv_heads: number of key/value heads (grouped-query attention);
      `n_heads` must be a multiple of it.
    d_ff: SwiGLU hidden width (HF `intermediate_size`).
    head_dim: per-head width; `None` means `d_model // n_heads`.
    max_seq_len: largest position the model is meant for.
    rope_theta: RoPE base.
    rms_norm_eps: epsilon of every RMSNorm.
    tie_embeddings: if True the LM head reuses the embedding matrix.
    qkv_bias: if True q/k/v projections have biases (Qwen2).
    rope_scaling: optional Llama-3 frequency scaling.
    dtype: activation (compute) dtype name. `dtype='bfloat16'` with
      `param_dtype='float32'` is mixed precision: float32 master weights
      (what the optimizer updates), bfloat16 matmuls and activations, and
      float32 norm statistics, softmax, logits and loss.
    param_dtype: parameter storage dtype name.
    scan_layers: if True the blocks' parameters are stacked (`layers/...`
      with a leading `[L]` axis instead of `layers/{i}/...`) and run with
      one `jax.lax.scan`: compile time independent of depth. Same function
      (tested); `common.models.stack_layers` / `unstack_layers` convert
      parameters between the two layouts. Default off (paths by layer
      index are what `common.optim` masks, NSPO and CKU select).
    remat: rematerialisation of each block in the backward pass:
      'none' (keep activations), 'full' (`jax.checkpoint`, save nothing),
      'dots' (save matmul outputs), 'dots_no_batch' (save matmuls without
      batch dimensions, i.e. the weight matmuls).
  """

  vocab_size: int
  d_model: int
  n_layers: int
  n_heads: int
  n_kv_heads: int
  d_ff: int
  head_dim: int | None = None
  max_seq_len: int = 2048
  rope_theta: float = 10000.0
  rms_norm_eps: float = 1e-6
  tie_embeddings: bool = True
  qkv_bias: bool = False
  rope_scaling: RopeScaling | None = None
  dtype: str = 'float32'
  param_dtype: str = 'float32'
  scan_layers: bool = False
  remat: str = 'none'

  def __post_init__(self):
    if self.head_dim is None and self.n_heads and self.n_heads > 0:
      object.__setattr__(self, 'head_dim', self.d_model // self.n_heads)

  def validate(self) -> LMConfig:
    """Checks every field; returns `self` so it can be chained.

    Raises:
      ValueError: naming the offending field, its value and what is allowed.
    """
    for name in (
      'vocab_size',
      'd_model',
      'n_layers',
      'n_heads',
      'n_kv_heads',
      'd_ff',
      'max_seq_len',
    ):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(
          f'LMConfig.{name} must be a positive int, got {value!r}.'
        )
    if self.n_heads % self.n_kv_heads:
      raise ValueError(
        f'LMConfig.n_heads ({self.n_heads}) must be a multiple of '
        f'n_kv_heads ({self.n_kv_heads}) for grouped-query attention.'
      )
    if not isinstance(self.head_dim, int) or self.head_dim <= 0:
      raise ValueError(
        f'LMConfig.head_dim must be a positive int, got {self.head_dim!r} '
        f'(d_model={self.d_model}, n_heads={self.n_heads}).'
      )
    if self.head_dim % 2:
      raise ValueError(
        f'LMConfig.head_dim must be even for rotary embeddings, got '
        f'{self.head_dim}.'
      )
    if not (math.isfinite(self.rope_theta) and self.rope_theta > 0):
      raise ValueError(
        f'LMConfig.rope_theta must be finite and > 0, got {self.rope_theta}.'
      )
    if not (math.isfinite(self.rms_norm_eps) and self.rms_norm_eps > 0):
      raise ValueError(
        f'LMConfig.rms_norm_eps must be finite and > 0, got '
        f'{self.rms_norm_eps}.'
      )
    for name in ('dtype', 'param_dtype'):
      if getattr(self, name) not in _DTYPES:
        raise ValueError(
          f'LMConfig.{name} must be one of {_DTYPES}, got '
          f'{getattr(self, name)!r}.'
        )
    if not isinstance(self.scan_layers, bool):
      raise ValueError(
        f'LMConfig.scan_layers must be a bool, got {self.scan_layers!r}.'
      )
    if self.remat not in REMAT_POLICIES:
      raise ValueError(
        f'LMConfig.remat must be one of {REMAT_POLICIES}, got {self.remat!r}.'
      )
    rs = self.rope_scaling
    if rs is not None:
      if not (
        rs.factor > 0
        and rs.low_freq_factor > 0
        and rs.high_freq_factor > rs.low_freq_factor
        and rs.original_max_position_embeddings > 0
      ):
        raise ValueError(
          'LMConfig.rope_scaling needs factor > 0, 0 < low_freq_factor < '
          f'high_freq_factor and original_max_position_embeddings > 0; '
          f'got {rs}.'
        )
    return self

  @property
  def jnp_dtype(self) -> jnp.dtype:
    """Compute dtype as a jnp dtype."""
    return jnp.dtype(self.dtype)

  @property
  def jnp_param_dtype(self) -> jnp.dtype:
    """Parameter dtype as a jnp dtype."""
    return jnp.dtype(self.param_dtype)

  def replace(self, **changes) -> LMConfig:
    """Returns a copy with `changes` applied (head_dim re-derived if unset)."""
    if 'head_dim' not in changes and (
      'd_model' in changes or 'n_heads' in changes
    ):
      base = self.d_model // self.n_heads if self.n_heads else None
      if self.head_dim == base:
        changes['head_dim'] = None
    return dataclasses.replace(self, **changes)


_LLAMA3_SCALING_1B = RopeScaling(32.0, 1.0, 4.0, 8192)
_LLAMA3_SCALING_8B = RopeScaling(8.0, 1.0, 4.0, 8192)

PRESETS: dict[str, LMConfig] = {
  # CPU test sizes.
  'tiny': LMConfig(
    vocab_size=256,
    d_model=64,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    d_ff=128,
    max_seq_len=512,
    rope_theta=10000.0,
    rms_norm_eps=1e-6,
    tie_embeddings=True,
  ),
  'small': LMConfig(
    vocab_size=512,
    d_model=128,
    n_layers=4,
    n_heads=4,
    n_kv_heads=2,
    d_ff=384,
    max_seq_len=1024,
    rope_theta=10000.0,
    rms_norm_eps=1e-6,
    tie_embeddings=True,
  ),
  # Real checkpoint shapes (Hugging Face config.json of each model).
  'qwen2.5-0.5b': LMConfig(
    vocab_size=151936,
    d_model=896,
    n_layers=24,
    n_heads=14,
    n_kv_heads=2,
    d_ff=4864,
    max_seq_len=32768,
    rope_theta=1e6,
    rms_norm_eps=1e-6,
    tie_embeddings=True,
    qkv_bias=True,
    dtype='bfloat16',
    param_dtype='bfloat16',
  ),
  'qwen2.5-1.5b': LMConfig(
    vocab_size=151936,
    d_model=1536,
    n_layers=28,
    n_heads=12,
    n_kv_heads=2,
    d_ff=8960,
    max_seq_len=32768,
    rope_theta=1e6,
    rms_norm_eps=1e-6,
    tie_embeddings=True,
    qkv_bias=True,
    dtype='bfloat16',
    param_dtype='bfloat16',
  ),
  'qwen2.5-3b': LMConfig(
    vocab_size=151936,
    d_model=2048,
    n_layers=36,
    n_heads=16,
    n_kv_heads=2,
    d_ff=11008,
    max_seq_len=32768,
    rope_theta=1e6,
    rms_norm_eps=1e-6,
    tie_embeddings=True,
    qkv_bias=True,
    dtype='bfloat16',
    param_dtype='bfloat16',
  ),
  'qwen2.5-7b': LMConfig(
    vocab_size=152064,
    d_model=3584,
    n_layers=28,
    n_heads=28,
    n_kv_heads=4,
    d_ff=18944,
    max_seq_len=32768,
    rope_theta=1e6,
    rms_norm_eps=1e-6,
    tie_embeddings=False,
    qkv_bias=True,
    dtype='bfloat16',
    param_dtype='bfloat16',
  ),
  'llama-3.2-1b': LMConfig(
    vocab_size=128256,
    d_model=2048,
    n_layers=16,
    n_heads=32,
    n_kv_heads=8,
    d_ff=8192,
    head_dim=64,
    max_seq_len=131072,
    rope_theta=500000.0,
    rms_norm_eps=1e-5,
    tie_embeddings=True,
    qkv_bias=False,
    rope_scaling=_LLAMA3_SCALING_1B,
    dtype='bfloat16',
    param_dtype='bfloat16',
  ),
  'llama-3.1-8b': LMConfig(
    vocab_size=128256,
    d_model=4096,
    n_layers=32,
    n_heads=32,
    n_kv_heads=8,
    d_ff=14336,
    head_dim=128,
    max_seq_len=131072,
    rope_theta=500000.0,
    rms_norm_eps=1e-5,
    tie_embeddings=False,
    qkv_bias=False,
    rope_scaling=_LLAMA3_SCALING_8B,
    dtype='bfloat16',
    param_dtype='bfloat16',
  ),
}


# Keys of a model spec that are not shape fields (see `build_config`).
IGNORED_SPEC_KEYS = ('hf_dir',)


def get_preset(name: str, **overrides) -> LMConfig:
  """Returns the named preset, optionally with fields overridden.

  Args:
    name: one of `PRESETS` (e.g. 'tiny', 'qwen2.5-0.5b').
    **overrides: LMConfig fields to replace (e.g. `dtype='float32'`).

  Raises:
    KeyError: for an unknown name, listing the known ones.
  """
  if name not in PRESETS:
    raise KeyError(
      f'Unknown model preset {name!r}; known presets: '
      f'{", ".join(sorted(PRESETS))}.'
    )
  config = PRESETS[name]
  if overrides:
    config = config.replace(**overrides)
  return config.validate()


def build_config(spec: Mapping[str, Any], **fixed) -> LMConfig:
  """An `LMConfig` from a preset name plus field overrides.

  The form experiment configs use for `config.model`::

    build_config({'preset': 'tiny', 'd_model': 64, 'n_layers': 2},
                 vocab_size=tokenizer.vocab_size, max_seq_len=64)

  Args:
    spec: `{'preset': name, <LMConfig field>: value, ...}` (a dict or an
      `ml_collections.ConfigDict`); keys in `IGNORED_SPEC_KEYS` (e.g.
      `hf_dir`, which selects a loader rather than a shape) are skipped.
    **fixed: fields the caller derives from the data (`vocab_size`,
      `max_seq_len`); they override the spec's.

  Returns:
    The validated config.

  Raises:
    ValueError: `spec` has no `preset`, or names a field `LMConfig` lacks
      (listing the fields there are).
    KeyError: an unknown preset (see `get_preset`).
  """
  spec = dict(spec.to_dict() if hasattr(spec, 'to_dict') else spec)
  preset = spec.pop('preset', None)
  if preset is None:
    raise ValueError(
      f'model spec {sorted(spec)} needs a preset: one of {sorted(PRESETS)}.'
    )
  for key in IGNORED_SPEC_KEYS:
    spec.pop(key, None)
  spec.update(fixed)
  fields = {f.name for f in dataclasses.fields(LMConfig)}
  unknown = sorted(set(spec) - fields)
  if unknown:
    raise ValueError(
      f'model spec field(s) {unknown} are not LMConfig fields; allowed: '
      f'{sorted(fields)}.'
    )
  return get_preset(preset, **spec)


_POSITIVE_INT_FIELDS = (
  'vocab_size',
  'd_model',
  'n_layers',
  'n_heads',
  'n_kv_heads',
  'd_ff',
  'max_seq_len',
)


def check_spec(field: str, value: Any) -> None:
  """A `common.schema` check for a `config.model` spec (see `build_config`).

  Accepts `{'preset': name, <LMConfig field>: value, 'hf_dir': str}` whose
  fields build a valid `LMConfig` (the data-derived `vocab_size` and
  `max_seq_len` are filled in with placeholders if absent).

  Raises:
    common.schema.ConfigError: naming `config.<field>.<key>`, the value and
      what is allowed.
  """
  from common import schema  # noqa: PLC0415 (schema is a leaf; no cycle)

  if hasattr(value, 'to_dict'):
    value = value.to_dict()
  if not isinstance(value, Mapping):
    schema.fail(field, value, "a dict {'preset': name, <LMConfig field>: ...}")
  spec = dict(value)
  preset = spec.pop('preset', None)
  if preset not in PRESETS:
    schema.fail(f'{field}.preset', preset, f'one of {sorted(PRESETS)}')
  for key in IGNORED_SPEC_KEYS:
    if key in spec and not isinstance(spec.pop(key), str):
      schema.fail(f'{field}.{key}', value[key], 'a string ("" for none)')
  fields = {f.name for f in dataclasses.fields(LMConfig)}
  allowed = sorted(fields | {'preset', *IGNORED_SPEC_KEYS})
  for key in sorted(spec):
    if key not in fields:
      schema.fail(f'{field}.{key}', spec[key], f'a field among {allowed}')
  for key in _POSITIVE_INT_FIELDS:
    v = spec.get(key)
    if key in spec and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
      schema.fail(f'{field}.{key}', v, 'an integer >= 1')
  spec.setdefault('vocab_size', 256)
  try:
    get_preset(preset, **spec)
  except (TypeError, ValueError) as e:
    raise schema.ConfigError(f'config.{field}: {e}') from None
