"""A tiny pure-JAX causal transformer whose attention is pluggable.

It exists to train with DHP: the same parameters run with ``dense_attention``
on one device (the reference) or with ``ring_attention`` inside a sub-mesh's
``shard_map``. Inputs are packed sequences described by segment ids and
positions, so one call handles a whole group.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

Params = dict
AttentionFn = Callable[..., jax.Array]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Sizes of the tiny transformer."""

  vocab_size: int = 32
  d_model: int = 32
  num_heads: int = 4
  num_layers: int = 2
  d_ff: int = 64
  max_len: int = 512

  def __post_init__(self):
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      if int(value) != value or value < 1:
        raise ValueError(f'ModelConfig.{f.name}={value!r}: must be int >= 1.')
    if self.d_model % self.num_heads:
      raise ValueError(
        f'd_model={self.d_model} must be divisible by '
        f'num_heads={self.num_heads}.'
      )


def init_params(key, cfg: ModelConfig) -> Params:
  """Random parameters (float32), a pytree of dicts and lists."""
  keys = iter(jax.random.split(key, 2 + 6 * cfg.num_layers))
  dense = lambda k, i, o: jax.random.normal(k, (i, o)) * i**-0.5
  params = {
    'embed': jax.random.normal(next(keys), (cfg.vocab_size, cfg.d_model)) * 0.5,
    'pos_embed': jax.random.normal(next(keys), (cfg.max_len, cfg.d_model))
    * 0.1,
    'final_norm': jnp.ones(cfg.d_model),
    'layers': [],
  }
  for _ in range(cfg.num_layers):
    params['layers'].append(
      {
        'norm1': jnp.ones(cfg.d_model),
        'wq': dense(next(keys), cfg.d_model, cfg.d_model),
        'wk': dense(next(keys), cfg.d_model, cfg.d_model),
        'wv': dense(next(keys), cfg.d_model, cfg.d_model),
        'wo': dense(next(keys), cfg.d_model, cfg.d_model),
        'norm2': jnp.ones(cfg.d_model),
        'w1': dense(next(keys), cfg.d_model, cfg.d_ff),
        'w2': dense(next(keys), cfg.d_ff, cfg.d_model),
      }
    )
  return params


def _rms_norm(x, scale):
  return x * jax.lax.rsqrt((x * x).mean(-1, keepdims=True) + 1e-6) * scale


def forward(
  params: Params,
  tokens,
  segment,
  position,
  attention: AttentionFn,
  num_heads: int,
):
  """Logits of a packed token stream.

  Args:
    params: from ``init_params``.
    tokens: int [T].
    segment: int [T] sequence ids (-1 = padding).
    position: int [T] positions within sequences (< max_len).
    attention: f(q, k, v, segment, position) -> [T, H, D].
    num_heads: H.

  Returns:
    float32 [T, vocab].
  """
  x = params['embed'][tokens] + params['pos_embed'][position]
  t, dm = x.shape
  split = lambda y: y.reshape(t, num_heads, dm // num_heads)
  for layer in params['layers']:
    h = _rms_norm(x, layer['norm1'])
    a = attention(
      split(h @ layer['wq']),
      split(h @ layer['wk']),
      split(h @ layer['wv']),
      segment,
      position,
    )
    x = x + a.reshape(t, dm) @ layer['wo']
    h = _rms_norm(x, layer['norm2'])
    x = x + jax.nn.gelu(h @ layer['w1']) @ layer['w2']
  return _rms_norm(x, params['final_norm']) @ params['embed'].T


def loss_sum(
  params: Params, batch: dict, attention: AttentionFn, num_heads: int
):
  """Summed next-token cross-entropy over tokens with weight 1.

  Args:
    params: model parameters.
    batch: 'tokens', 'targets', 'weights' (float [T]), 'segment',
      'position', each [T].
    attention: attention function, see ``forward``.
    num_heads: H.

  Returns:
    float32 scalar sum_t weights_t * CE_t.
  """
  logits = forward(
    params,
    batch['tokens'],
    batch['segment'],
    batch['position'],
    attention,
    num_heads,
  )
  logp = jax.nn.log_softmax(logits)
  ce = -jnp.take_along_axis(logp, batch['targets'][:, None], axis=-1)[:, 0]
  return (ce * batch['weights']).sum()
