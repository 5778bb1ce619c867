"""Long pages through context parallelism: the model's attention on a ring.

ReaderLM-v2 trains on 32K-256K-token pages with zig-zag ring attention. Here
the same idea runs at small scale: the sequences of a batch (e.g. long
cleaned pages with their Markdown) are packed, laid out in zig-zag order
over a mesh axis of d devices (`common.parallel.zigzag_layout`), and every
layer of a `common.models.Transformer` runs with its attention replaced by
`common.parallel.ring_attention` inside `jax.shard_map`. Everything else
(embedding, RMSNorm, rotary embeddings, q/k/v/o projections, SwiGLU MLP,
LM head) is the model's own modules, so the result equals the model's dense
forward up to float rounding (tested on 8 CPU devices).

`ring_forward` returns per-token logits and hidden states in the original
order; `ring_token_logprobs` gives teacher-forced log-probs and copy
accuracy (the training/eval path: `jax.grad` of a loss over
`ring_forward_packed` differentiates through the ring).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from common.models import transformer as tf
from common.parallel import ring_attention as ra

AXIS = 'cp'


def make_ring_mesh(degree: int | None = None, axis_name: str = AXIS):
  """A 1-D mesh over the first `degree` devices (default: all of them).

  Raises:
    ValueError: `degree` is not in [1, jax.device_count()].
  """
  n = jax.device_count()
  degree = n if degree is None else degree
  if int(degree) != degree or not 1 <= degree <= n:
    raise ValueError(
      f'degree={degree!r}: must be an int in [1, {n}] (jax.device_count()).'
    )
  return jax.make_mesh(
    (int(degree),),
    (axis_name,),
    axis_types=(AxisType.Explicit,),
    devices=jax.devices()[: int(degree)],
  )


@dataclasses.dataclass(frozen=True)
class Packed:
  """A batch of sequences packed in zig-zag order for a ring of d devices.

  Attributes:
    tokens: int32 [T] token ids in layout order (0 at padding).
    layout: the `ZigzagLayout` (source, segment, position; T tokens).
    lengths: the sequences' lengths, in input order.
  """

  tokens: np.ndarray
  layout: ra.ZigzagLayout
  lengths: tuple[int, ...]

  def unpack(self, x) -> list[np.ndarray]:
    """Per-sequence rows of a layout-ordered `[T, ...]` array."""
    x = np.asarray(x)
    src = self.layout.source
    flat = np.zeros((sum(self.lengths),) + x.shape[1:], x.dtype)
    flat[src[src >= 0]] = x[src >= 0]
    return np.split(flat, np.cumsum(self.lengths)[:-1])


def pack(sequences: Sequence[Sequence[int]], degree: int) -> Packed:
  """Zig-zag packing of token sequences (each >= 1 token) for d devices."""
  seqs = [np.asarray(s, np.int32).reshape(-1) for s in sequences]
  lens = [len(s) for s in seqs]
  layout = ra.zigzag_layout(lens, degree)
  flat = np.concatenate(seqs) if seqs else np.zeros(0, np.int32)
  src = layout.source
  tokens = np.where(src >= 0, flat[np.maximum(src, 0)], 0).astype(np.int32)
  return Packed(tokens, layout, tuple(lens))


def _blocks(model):
  """The model's decoder blocks as a list (unstacks `scan_layers`)."""
  if not model.config.scan_layers:
    return list(model.layers)
  graphdef, stacked = nnx.split(model.layers)
  return [
    nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], stacked))
    for i in range(model.config.n_layers)
  ]


def _local_forward(graphdef, params, tokens, segment, position, axis, degree):
  """One device's shard [T/d] -> (logits [T/d, V], hidden [T/d, D])."""
  model = nnx.merge(graphdef, params)
  cfg = model.config
  h, hkv, dh = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
  t = tokens.shape[0]
  cos, sin = tf.rope_cos_sin(position[None], tf.rope_inv_freq(cfg))
  x = model.embed(tokens[None]).astype(cfg.jnp_dtype)
  for block in _blocks(model):
    att = block.attn
    a_in = block.input_layernorm(x)
    q = tf.apply_rope(att.q_proj(a_in).reshape(1, t, h, dh), cos, sin)
    k = tf.apply_rope(att.k_proj(a_in).reshape(1, t, hkv, dh), cos, sin)
    v = att.v_proj(a_in).reshape(1, t, hkv, dh)
    rep = h // hkv  # grouped-query: each K/V head serves `rep` query heads
    k, v = jnp.repeat(k[0], rep, axis=1), jnp.repeat(v[0], rep, axis=1)
    o = ra.ring_attention(
      q[0].astype(jnp.float32),
      k.astype(jnp.float32),
      v.astype(jnp.float32),
      segment,
      position,
      axis,
      degree,
    )
    x = x + att.o_proj(o.reshape(1, t, h * dh).astype(x.dtype))
    m, _ = block.mlp(block.post_attention_layernorm(x))
    x = x + m
  hidden = model.norm(x)
  return model.logits_from_hidden(hidden)[0], hidden[0]


@functools.lru_cache(maxsize=16)
def _compiled(graphdef, mesh, axis, degree):
  """The jitted shard_map'ed forward, one per (model structure, mesh)."""

  def local(p, tok, seg, pos):
    return _local_forward(graphdef, p, tok, seg, pos, axis, degree)

  return jax.jit(
    jax.shard_map(
      local,
      mesh=mesh,
      in_specs=(P(), P(axis), P(axis), P(axis)),
      out_specs=(P(axis), P(axis)),
    )
  )


def ring_forward_packed(graphdef, params, packed: Packed, mesh, axis=AXIS):
  """Layout-ordered `(logits [T, V], hidden [T, D])` through the ring.

  Differentiable in `params` (the ring's ppermute/scan have transposes).
  """
  degree = mesh.shape[axis]
  if packed.layout.degree != degree:
    raise ValueError(
      f'packed for degree {packed.layout.degree}, mesh axis {axis!r} has '
      f'{degree} devices; pack(sequences, {degree}).'
    )

  fn = _compiled(graphdef, mesh, axis, degree)
  shard = NamedSharding(mesh, P(axis))
  put = lambda a: jax.device_put(jnp.asarray(a), shard)  # noqa: E731
  rep = NamedSharding(mesh, P())
  params = jax.device_put(params, rep)
  return fn(
    params,
    put(packed.tokens),
    put(packed.layout.segment),
    put(packed.layout.position),
  )


def ring_forward(graphdef, params, sequences, mesh, axis=AXIS):
  """Per-sequence `(logits [n_i, V], hidden [n_i, D])` lists, via the ring.

  Args:
    graphdef, params: from `common.models.split` of a `Transformer`.
    sequences: token id sequences (any lengths >= 1; packed together).
    mesh: a mesh with axis `axis` (e.g. `make_ring_mesh(8)`).
    axis: the ring's mesh axis name.

  Returns:
    `(logits, hidden)`: lists with one array per sequence, in input order;
    equal to the model's dense forward on each sequence alone.
  """
  packed = pack(sequences, mesh.shape[axis])
  logits, hidden = ring_forward_packed(graphdef, params, packed, mesh, axis)
  return packed.unpack(logits), packed.unpack(hidden)


def ring_token_logprobs(
  graphdef, params, sequences, response_starts, mesh, axis=AXIS
):
  """Teacher-forced scores of responses after long prompts, via the ring.

  Args:
    graphdef, params: the model.
    sequences: prompt + response token ids, one per example.
    response_starts: index of each sequence's first response token (>= 1).
    mesh, axis: the ring mesh.

  Returns:
    `{'logprob': [n] sum of response log-probs, 'tokens': [n] response
    lengths, 'copy_accuracy': [n] share of response tokens that are the
    greedy (argmax) prediction}`.
  """
  logits, _ = ring_forward(graphdef, params, sequences, mesh, axis)
  lp, count, acc = [], [], []
  for lg, seq, start in zip(logits, sequences, response_starts, strict=True):
    seq = np.asarray(seq)
    if not 1 <= start < len(seq):
      raise ValueError(
        f'response_starts={start}: must be in [1, {len(seq) - 1}] '
        '(a non-empty response after a non-empty prompt).'
      )
    pred = np.asarray(jax.nn.log_softmax(lg[start - 1 : -1], axis=-1))
    tgt = seq[start:]
    lp.append(float(pred[np.arange(len(tgt)), tgt].sum()))
    count.append(len(tgt))
    acc.append(float(np.mean(pred.argmax(-1) == tgt)))
  return {
    'logprob': np.asarray(lp),
    'tokens': np.asarray(count),
    'copy_accuracy': np.asarray(acc),
  }
