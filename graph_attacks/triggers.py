"""Fixed-shape subgraph-trigger attachment, gates and the homophily loss.

A trigger for target m is n nodes with features `feats[m]` `[n, F]`,
internal edge weights `inner[m]` `[n, n]` (symmetric, zero diagonal) and
attachment weights `attach[m]` `[n]` (target -> trigger node j). Attaching
M triggers to a graph of N nodes and E edges always gives N + M n nodes and
E + 2 M n + M n (n - 1) edges; absent edges carry weight 0, so `jit` sees
one shape and gradients flow into features and (gated) weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jraph

from graph_attacks import rows


def straight_through(p: jax.Array, threshold: float = 0.5) -> jax.Array:
  """Forward 1[p > threshold], backward identity (GradWhere / STE)."""
  hard = (p > threshold).astype(p.dtype)
  return p + jax.lax.stop_gradient(hard - p)


def pair_index(n: int) -> tuple[jax.Array, jax.Array]:
  """Upper-triangle pairs (a < b) of n nodes: two `[n(n-1)/2]` arrays."""
  a, b = jnp.triu_indices(n, 1)
  return a, b


def pairs_to_matrix(values: jax.Array, n: int) -> jax.Array:
  """`[..., n(n-1)/2]` upper-triangle values -> symmetric `[..., n, n]`."""
  a, b = pair_index(n)
  out = jnp.zeros(values.shape[:-1] + (n, n), values.dtype)
  out = out.at[..., a, b].set(values)
  return out.at[..., b, a].set(values)


def attach_triggers(
  graph: jraph.GraphsTuple,
  targets: jax.Array,
  feats: jax.Array,
  inner: jax.Array,
  attach: jax.Array,
) -> jraph.GraphsTuple:
  """Appends one trigger per target node.

  Args:
    graph: `nodes` `[N, F]`, weighted edges `[E]`.
    targets: int `[M]` node indices.
    feats: `[M, n, F]` trigger node features.
    inner: `[M, n, n]` symmetric internal weights (diagonal ignored).
    attach: `[M, n]` weights of target -> trigger-node edges.

  Returns:
    Graph with N + M n nodes (trigger m node j at N + m n + j) and
    E + 2 M n + M n (n - 1) edges, both directions of every new edge.
  """
  m, n, f = feats.shape
  if graph.nodes.shape[1] != f:
    raise ValueError(
      f'trigger features have width {f}, graph features {graph.nodes.shape[1]}'
    )
  if (
    targets.shape != (m,) or inner.shape != (m, n, n) or attach.shape != (m, n)
  ):
    raise ValueError(
      f'shape mismatch: targets {targets.shape}, feats {feats.shape}, '
      f'inner {inner.shape}, attach {attach.shape} (need [M], [M,n,F], '
      '[M,n,n], [M,n])'
    )
  num = graph.nodes.shape[0]
  dtype = graph.edges.dtype
  ids = num + jnp.arange(m * n, dtype=jnp.int32).reshape(m, n)
  tgt = jnp.broadcast_to(targets.astype(jnp.int32)[:, None], (m, n))
  a, b = jnp.nonzero(~jnp.eye(n, dtype=bool), size=n * (n - 1))
  senders = jnp.concatenate(
    [graph.senders, tgt.ravel(), ids.ravel(), ids[:, a].ravel()]
  )
  receivers = jnp.concatenate(
    [graph.receivers, ids.ravel(), tgt.ravel(), ids[:, b].ravel()]
  )
  weights = jnp.concatenate(
    [
      graph.edges,
      attach.ravel().astype(dtype),
      attach.ravel().astype(dtype),
      inner[:, a, b].ravel().astype(dtype),
    ]
  )
  # `rows.append`: for a `Rows` union the triggers extend the table only.
  nodes = rows.append(graph.nodes, feats.reshape(m * n, f))
  return jraph.GraphsTuple(
    nodes=nodes,
    edges=weights,
    senders=senders,
    receivers=receivers,
    globals=None,
    n_node=jnp.array([nodes.shape[0]]),
    n_edge=jnp.array([senders.shape[0]]),
  )


def l2_normalize(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  """x / max(||x||, eps) along the last axis, with finite gradients at 0."""
  sq = (x * x).sum(-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def cosine(a: jax.Array, b: jax.Array, eps: float = 1e-8) -> jax.Array:
  """Cosine similarity along the last axis (0 where a vector is 0)."""
  return (l2_normalize(a, eps) * l2_normalize(b, eps)).sum(-1)


def homophily_loss(
  target_x: jax.Array,
  feats: jax.Array,
  inner: jax.Array,
  attach: jax.Array,
  tau: float,
) -> jax.Array:
  """UGBA's unnoticeability loss over trigger edges.

  mean over live trigger edges (u, v) of w_uv * relu(tau - cos(x_u, x_v)),
  the attachment edges and the internal pairs (a < b) together; weighting
  by w keeps straight-through gates in the gradient.

  Args:
    target_x: `[M, F]` target features.
    feats: `[M, n, F]`; inner `[M, n, n]`; attach `[M, n]`.
    tau: similarity threshold.
  """
  n = feats.shape[1]
  a, b = pair_index(n)
  att = jax.nn.relu(tau - cosine(target_x[:, None, :], feats))
  inn = jax.nn.relu(tau - cosine(feats[:, a], feats[:, b]))
  wi = inner[:, a, b]
  total = (attach * att).sum() + (wi * inn).sum()
  count = (attach > 0).sum() + (wi > 0).sum()
  return total / jnp.maximum(count, 1)
