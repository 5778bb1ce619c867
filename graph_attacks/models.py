"""GCN, GAT and GraphSAGE in Flax NNX over weighted `jraph.GraphsTuple`s.

All layers honour edge weights `graph.edges` `[E]` (0 = absent edge), which
is what lets straight-through trigger gates receive gradient and lets
padding and edge-dropping defences work at fixed shapes. Dropout takes an
explicit PRNG key (`key=None` is evaluation), so jitted steps stay pure. The
message-passing functions check their shapes with chex asserts (static, so
free under jit; an `AssertionError` naming the function and argument).
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import jraph
from flax import nnx

from graph_attacks import rows

_GLOROT = nnx.initializers.glorot_uniform()


def _dyadic_bits(rate: float, max_bits: int = 8) -> int:
  """Smallest b <= max_bits with rate * 2**b an integer (0 if none)."""
  for b in range(1, max_bits + 1):
    if float(rate * 2**b).is_integer():
      return b
  return 0


def bit_mask_keep(key: jax.Array, shape, rate: float) -> jax.Array:
  """Boolean keep-mask, P(drop) = `rate` exactly, from b random bits each.

  `rate` must be a multiple of 2**-b (b <= 8; 0.5 needs one bit): each
  element reads b bits of a uint32 draw (32 / b elements per word) instead
  of a 32-bit float uniform, 32 / b times fewer random-number evaluations
  (an 11x faster mask over Cora's 2708 x 1433 inputs at rate 0.5).
  """
  b = _dyadic_bits(rate)
  if not b:
    raise ValueError(f'rate={rate} is not a multiple of 1/256')
  size = math.prod(shape)
  words = -(-size * b // 32)
  u = jax.random.bits(key, (words,), jnp.uint32)
  bits = (u[:, None] >> jnp.arange(32, dtype=jnp.uint32)) & jnp.uint32(1)
  bits = bits.reshape(-1)[: size * b].reshape(size, b)
  value = (bits << jnp.arange(b, dtype=jnp.uint32)).sum(-1)
  return (value >= jnp.uint32(round(rate * 2**b))).reshape(shape)


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
  """Inverted dropout; identity when `key` is None or `rate` is 0.

  Rates that are multiples of 1/256 (0.5, 0.25, ...) draw the mask from
  random bits (`bit_mask_keep`), exact and several times cheaper than a
  float Bernoulli mask, which dominated an epoch on wide bag-of-words
  inputs; other rates use `jax.random.bernoulli`.
  """
  if key is None or rate == 0.0:
    return x
  x = rows.dense(x)
  if _dyadic_bits(rate):
    keep = bit_mask_keep(key, x.shape, rate)
  else:
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


def _check_message_passing(name: str, x, graph: jraph.GraphsTuple) -> None:
  """Shape contract (chex, static under jit): `x [N, D]`, edge arrays `[E]`."""
  chex.assert_rank(x, 2, custom_message=f'{name}: node values x must be [N, D]')
  chex.assert_rank(
    [graph.senders, graph.receivers, graph.edges],
    1,
    custom_message=f'{name}: senders, receivers and edge weights must be [E]',
  )
  chex.assert_equal_shape(
    [graph.senders, graph.receivers, graph.edges],
    custom_message=f'{name}: senders, receivers and edge weights must be [E]',
  )


def gcn_propagate(
  x: jax.Array, graph: jraph.GraphsTuple, add_self_loops: bool = True
) -> jax.Array:
  """Weighted D^-1/2 (A + I) D^-1/2 x with segment sums.

  Args:
    x: node values `[N, D]`.
    graph: `senders`/`receivers` `[E]`, weights `edges` `[E]`.
    add_self_loops: add a unit self-loop per node.

  Returns:
    `[N, D]`. Degrees are weighted: deg_i = sum_{j->i} w_ji (+ 1).
  """
  _check_message_passing('gcn_propagate', x, graph)
  n = x.shape[0]
  w = graph.edges.astype(x.dtype)
  deg = jax.ops.segment_sum(w, graph.receivers, num_segments=n)
  if add_self_loops:
    deg = deg + 1.0
  inv = jnp.where(deg > 0, jax.lax.rsqrt(jnp.maximum(deg, 1e-12)), 0.0)
  coef = w * inv[graph.senders] * inv[graph.receivers]
  out = jax.ops.segment_sum(
    coef[:, None] * x[graph.senders], graph.receivers, num_segments=n
  )
  if add_self_loops:
    out = out + (inv * inv)[:, None] * x
  return out


class GCN(nnx.Module):
  """Multi-layer GCN (Kipf & Welling) with weighted edges.

  Layer l: H' = act(D^-1/2 (A+I) D^-1/2 H W_l + b_l). The last layer has no
  activation. `embed` returns the penultimate representation.
  """

  def __init__(
    self,
    in_dim: int,
    hidden: int,
    out_dim: int,
    n_layers: int = 2,
    dropout_rate: float = 0.5,
    *,
    rngs: nnx.Rngs,
  ):
    if n_layers < 1:
      raise ValueError(f'n_layers={n_layers} must be >= 1')
    dims = [in_dim] + [hidden] * (n_layers - 1) + [out_dim]
    # Bias after propagation, as Kipf & Welling and PyG's GCNConv.
    self.layers = nnx.List(
      [
        nnx.Linear(a, b, use_bias=False, kernel_init=_GLOROT, rngs=rngs)
        for a, b in zip(dims[:-1], dims[1:], strict=True)
      ]
    )
    self.biases = nnx.List([nnx.Param(jnp.zeros(b)) for b in dims[1:]])
    self.dropout_rate = dropout_rate

  def _conv(self, i, h, graph):
    h = rows.dense_rowwise(self.layers[i], h)
    return gcn_propagate(h, graph) + self.biases[i][...]

  def hidden_layers(self, graph, key=None, n_layers=None):
    """Output of the first `n_layers` layers (default all but the last)."""
    h = graph.nodes
    k = len(self.layers) - 1 if n_layers is None else n_layers
    for i in range(k):
      sub = None if key is None else jax.random.fold_in(key, i)
      h = dropout(h, self.dropout_rate, sub)
      h = jax.nn.relu(self._conv(i, h, graph))
    return h

  def embed(self, graph, key=None):
    return self.hidden_layers(graph, key)

  def __call__(self, graph: jraph.GraphsTuple, key=None) -> jax.Array:
    """Logits `[N, out_dim]`."""
    h = self.embed(graph, key)
    sub = None if key is None else jax.random.fold_in(key, 1000)
    h = dropout(h, self.dropout_rate, sub)
    return self._conv(len(self.layers) - 1, h, graph)


class GATLayer(nnx.Module):
  """Multi-head graph attention with self-loops; weights scale attention.

  e_ij = LeakyReLU_0.2(a_s . W h_j + a_r . W h_i), alpha = softmax over the
  incoming live edges (w > 0) and the self-loop, messages alpha_ij * w_ij.
  """

  def __init__(self, in_dim, out_dim, heads, concat, *, rngs: nnx.Rngs):
    self.lin = nnx.Linear(in_dim, heads * out_dim, use_bias=False, rngs=rngs)
    init = nnx.initializers.glorot_uniform()
    self.att_s = nnx.Param(init(rngs.params(), (heads, out_dim)))
    self.att_r = nnx.Param(init(rngs.params(), (heads, out_dim)))
    self.bias = nnx.Param(jnp.zeros(heads * out_dim if concat else out_dim))
    self.heads, self.out_dim, self.concat = heads, out_dim, concat

  def __call__(self, x, graph, key=None, attn_dropout=0.0):
    n = x.shape[0]
    h = rows.dense_rowwise(self.lin, x).reshape(n, self.heads, self.out_dim)
    loops = jnp.arange(n, dtype=graph.senders.dtype)
    s = jnp.concatenate([graph.senders, loops])
    r = jnp.concatenate([graph.receivers, loops])
    w = jnp.concatenate([graph.edges.astype(x.dtype), jnp.ones(n, x.dtype)])
    a_s = (h * self.att_s[None]).sum(-1)
    a_r = (h * self.att_r[None]).sum(-1)
    logits = jax.nn.leaky_relu(a_s[s] + a_r[r], 0.2)
    logits = jnp.where((w > 0)[:, None], logits, -1e9)
    alpha = jraph.segment_softmax(logits, r, num_segments=n)
    alpha = dropout(alpha, attn_dropout, key) * w[:, None]
    out = jax.ops.segment_sum(alpha[..., None] * h[s], r, num_segments=n)
    out = out.reshape(n, -1) if self.concat else out.mean(1)
    return out + self.bias


class GAT(nnx.Module):
  """Two-layer GAT: `heads` concatenated heads, then one averaged output."""

  def __init__(
    self,
    in_dim: int,
    hidden: int,
    out_dim: int,
    heads: int = 8,
    dropout_rate: float = 0.5,
    *,
    rngs: nnx.Rngs,
  ):
    per_head = max(1, hidden // heads)
    self.l1 = GATLayer(in_dim, per_head, heads, True, rngs=rngs)
    self.l2 = GATLayer(per_head * heads, out_dim, 1, False, rngs=rngs)
    self.dropout_rate = dropout_rate

  def embed(self, graph, key=None):
    k = [None] * 2 if key is None else jax.random.split(key, 2)
    h = dropout(graph.nodes, self.dropout_rate, k[0])
    return jax.nn.elu(self.l1(h, graph, k[1], self.dropout_rate))

  def __call__(self, graph, key=None):
    h = self.embed(graph, key)
    k = (
      [None] * 2
      if key is None
      else jax.random.split(jax.random.fold_in(key, 1), 2)
    )
    h = dropout(h, self.dropout_rate, k[0])
    return self.l2(h, graph, k[1], self.dropout_rate)


def sage_mean(x: jax.Array, graph: jraph.GraphsTuple) -> jax.Array:
  """Weighted neighbour mean sum_j w_ji x_j / sum_j w_ji (0 if isolated).

  Shapes as `gcn_propagate`: `x [N, D]`, edges `[E]` -> `[N, D]`.
  """
  _check_message_passing('sage_mean', x, graph)
  n = x.shape[0]
  w = graph.edges.astype(x.dtype)
  tot = jax.ops.segment_sum(w, graph.receivers, num_segments=n)
  agg = jax.ops.segment_sum(
    w[:, None] * x[graph.senders], graph.receivers, num_segments=n
  )
  return agg / jnp.maximum(tot, 1e-12)[:, None]


class SAGE(nnx.Module):
  """GraphSAGE (mean aggregator): H' = act(W_s H + W_n mean_N(H))."""

  def __init__(
    self,
    in_dim: int,
    hidden: int,
    out_dim: int,
    n_layers: int = 2,
    dropout_rate: float = 0.5,
    *,
    rngs: nnx.Rngs,
  ):
    dims = [in_dim] + [hidden] * (n_layers - 1) + [out_dim]
    self.self_lin = nnx.List(
      [
        nnx.Linear(a, b, rngs=rngs)
        for a, b in zip(dims[:-1], dims[1:], strict=True)
      ]
    )
    self.neigh_lin = nnx.List(
      [
        nnx.Linear(a, b, use_bias=False, kernel_init=_GLOROT, rngs=rngs)
        for a, b in zip(dims[:-1], dims[1:], strict=False)
      ]
    )
    self.dropout_rate = dropout_rate

  def _layer(self, i, h, graph):
    # W_n mean(h) == mean(W_n h): aggregate after the (narrowing) linear map.
    own = rows.dense_rowwise(self.self_lin[i], h)
    return own + sage_mean(rows.dense_rowwise(self.neigh_lin[i], h), graph)

  def embed(self, graph, key=None):
    h = graph.nodes
    for i in range(len(self.self_lin) - 1):
      sub = None if key is None else jax.random.fold_in(key, i)
      h = jax.nn.relu(self._layer(i, dropout(h, self.dropout_rate, sub), graph))
    return h

  def __call__(self, graph, key=None):
    h = self.embed(graph, key)
    sub = None if key is None else jax.random.fold_in(key, 1000)
    return self._layer(-1, dropout(h, self.dropout_rate, sub), graph)


def build_model(
  name: str,
  in_dim: int,
  hidden: int,
  out_dim: int,
  *,
  seed: int,
  n_layers: int = 2,
  dropout_rate: float = 0.5,
  heads: int = 8,
) -> nnx.Module:
  """Builds 'gcn', 'gat' or 'sage' by name."""
  rngs = nnx.Rngs(seed)
  if name == 'gcn':
    return GCN(in_dim, hidden, out_dim, n_layers, dropout_rate, rngs=rngs)
  if name == 'gat':
    return GAT(in_dim, hidden, out_dim, heads, dropout_rate, rngs=rngs)
  if name == 'sage':
    return SAGE(in_dim, hidden, out_dim, n_layers, dropout_rate, rngs=rngs)
  raise ValueError(f"unknown model {name!r}; allowed: 'gcn', 'gat', 'sage'")
