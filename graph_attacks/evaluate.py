"""Batched inductive ASR on k-hop subgraphs and clean accuracy.

The k-hop subgraph of every attacked node is extracted once, vectorised
(sparse reachability, no per-subgraph host loop), and the subgraphs are
stacked as one disjoint union padded to half-octave buckets, its features
held as indices into the original rows (`rows.Rows`: the triggers extend
that table, and first layers run on the distinct rows, so the union's
U x F matrix is never written). Message
passing never crosses components, so one forward pass over the union with
a trigger attached to every centre equals the code's 1-by-1 loop over
nodes. `triggered_predictions` is that pass as one jitted call: the
victim, the trigger source and the defence are pytree callables
(`functional.module_fn`, `jax.tree_util.Partial`) passed as arguments, so
one compilation serves every trained victim and attack of a shape.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import scipy.sparse as sp

from graph_attacks import graph as graph_lib
from graph_attacks import rows
from graph_attacks import triggers

# trigger_fn(x_targets [M, F], key) -> (feats [M,n,F], inner [M,n,n],
#                                       attach [M,n])
TriggerFn = Callable[[jax.Array, jax.Array], tuple]
# graph -> graph, applied after the triggers are attached (test defence).
GraphFn = Callable[[jraph.GraphsTuple], jraph.GraphsTuple]


@dataclasses.dataclass(frozen=True)
class SubgraphBatch:
  """Disjoint union of padded k-hop subgraphs.

  Attributes:
    graph: the union (NumPy leaves), padded; weights 0 on padding edges.
      Its `nodes` are `rows.Rows`: the original graph's feature rows (plus
      a zero row for padding) and one index per union node, so the
      features of a node in several subgraphs are stored once.
    centers: int `[M]` index of each subgraph's centre in the union.
    nodes: int `[M]` the centres' ids in the original graph.
    num_real_nodes: nodes before padding.
  """

  graph: jraph.GraphsTuple
  centers: np.ndarray
  nodes: np.ndarray
  num_real_nodes: int

  @functools.cached_property
  def device_graph(self) -> jraph.GraphsTuple:
    """`graph` as device arrays, transferred once and reused."""
    return jax.tree.map(jnp.asarray, self.graph)

  @functools.cached_property
  def dense_graph(self) -> jraph.GraphsTuple:
    """`graph` with its features gathered into one `[U, F]` array."""
    return self.graph._replace(nodes=self.graph.nodes.dense())


def _adjacency(graph: jraph.GraphsTuple, n: int) -> sp.csr_matrix:
  live = np.asarray(graph.edges) > 0
  s = np.asarray(graph.senders)[live]
  r = np.asarray(graph.receivers)[live]
  return sp.csr_matrix((np.ones(s.size, np.float32), (s, r)), shape=(n, n))


def subgraph_batch(
  graph: jraph.GraphsTuple, nodes, hops: int = 2
) -> SubgraphBatch:
  """Extracts and batches the `hops`-hop subgraph of every node in `nodes`.

  Vectorised: the node sets are the non-zeros of `1[centre] (A + I)^hops`
  (sparse products), the edges those of A between two nodes of one set.
  Within a subgraph the centre comes first, then the other nodes by id.
  """
  nodes = np.asarray(nodes)
  if nodes.size == 0:
    raise ValueError('subgraph_batch needs at least one centre node')
  n, m = graph.nodes.shape[0], nodes.size
  adj = _adjacency(graph, n)
  step = (adj + sp.identity(n, np.float32, format='csr')).tocsr()
  reach = sp.csr_matrix(
    (np.ones(m, np.float32), (np.arange(m), nodes)), shape=(m, n)
  )
  for _ in range(hops):
    reach = (reach @ step).tocsr()
    reach.data[:] = 1.0
  reach.sort_indices()
  sub = np.repeat(np.arange(m), np.diff(reach.indptr))  # subgraph of entry
  orig = reach.indices.astype(np.int64)  # original node of entry
  # Centre first: sort each subgraph's entries by (not centre, id).
  order = np.lexsort((orig, orig != nodes[sub], sub))
  sub, orig = sub[order], orig[order]
  total = sub.size
  # Edges: for every entry (k, u) and live edge u -> v, keep if (k, v) exists.
  deg = np.diff(adj.indptr)[orig]
  src_entry = np.repeat(np.arange(total), deg)
  starts = adj.indptr[orig]
  offs = np.arange(deg.sum()) - np.repeat(np.cumsum(deg) - deg, deg)
  dst_orig = adj.indices[np.repeat(starts, deg) + offs].astype(np.int64)
  key = sub * n + orig  # unique per entry
  sorter = np.argsort(key, kind='stable')
  want = sub[src_entry] * n + dst_orig
  pos = np.searchsorted(key, want, sorter=sorter)
  pos = np.minimum(pos, total - 1)
  hit = key[sorter[pos]] == want
  senders = src_entry[hit]
  receivers = sorter[pos][hit]
  weights = _edge_weights(graph, orig[senders], orig[receivers], n)
  # Structure first (zero-width features), padded; then the features as
  # rows of the original matrix plus one zero row for the padding nodes.
  union = graph_lib.pad_to_bucket(
    graph_lib.make_graph(np.zeros((total, 0)), senders, receivers, weights)
  )
  feats = np.asarray(graph.nodes, np.float32)
  table = np.concatenate([feats, np.zeros((1, feats.shape[1]), np.float32)])
  pad = union.nodes.shape[0] - total
  index = np.concatenate([orig, np.full(pad, n, np.int64)]).astype(np.int32)
  first = np.searchsorted(sub, np.arange(m))
  return SubgraphBatch(
    graph=union._replace(nodes=rows.Rows(table, index)),
    centers=first.astype(np.int32),
    nodes=nodes,
    num_real_nodes=total,
  )


def _edge_weights(graph, s, r, n) -> np.ndarray:
  """Weights of the live edges (s, r) of `graph` `[len(s)]`."""
  w = np.asarray(graph.edges)
  live = w > 0
  key = np.asarray(graph.senders)[live].astype(np.int64) * n + np.asarray(
    graph.receivers
  )[live].astype(np.int64)
  wl = w[live]
  sorter = np.argsort(key, kind='stable')
  pos = sorter[np.searchsorted(key, s * n + r, sorter=sorter)]
  return wl[pos]


def triggered(graph, centers, trigger_fn: TriggerFn, key):
  """Attaches `trigger_fn`'s trigger to every centre (jit-able)."""
  graph = jax.tree.map(jnp.asarray, graph)
  centers = jnp.asarray(centers)
  feats, inner, attach = trigger_fn(graph.nodes[centers], key)
  return triggers.attach_triggers(graph, centers, feats, inner, attach)


def _predictions(logits_fn, trigger_fn, defence, graph, centers, key):
  g = graph
  if trigger_fn is not None:
    g = triggered(graph, centers, trigger_fn, key)
  if defence is not None:
    g = defence(g)
  return jnp.argmax(logits_fn(g)[centers], -1)


_jit_predictions = jax.jit(_predictions)


def _is_pytree_fn(f) -> bool:
  return f is None or isinstance(f, jax.tree_util.Partial)


def triggered_predictions(
  logits_fn,
  batch: SubgraphBatch,
  trigger_fn: TriggerFn | None,
  *,
  defence: GraphFn | None = None,
  seed: int = 0,
) -> np.ndarray:
  """Predicted class of every centre once triggered (and defended).

  One jitted call over the whole union when `logits_fn`, `trigger_fn` and
  `defence` are pytree callables (`functional.module_fn`,
  `jax.tree_util.Partial`); any other callable runs op by op (same
  result). `trigger_fn=None` scores the untriggered subgraphs.

  Returns:
    int `[M]` predictions at `batch.centers`.
  """
  args = (
    batch.device_graph,
    jnp.asarray(batch.centers),
    jax.random.key(seed),
  )
  fns = (logits_fn, trigger_fn, defence)
  if all(map(_is_pytree_fn, fns)):
    return np.asarray(_jit_predictions(*fns, *args))
  return np.asarray(_predictions(*fns, *args))


def success_rates(pred, labels, target: int) -> dict:
  """ASR over all centres and flip-ASR over those not of class `target`.

  Args:
    pred: int `[M]` predictions at the centres.
    labels: int `[M]` the centres' true labels.
    target: y_t.

  Returns:
    `{'asr', 'flip_asr'}`: the fraction predicted `target` among all
    centres ("overall", as the released code) and among the centres whose
    true class is not `target` (NaN if there are none).
  """
  pred, labels = np.asarray(pred), np.asarray(labels)
  hit = pred == target
  other = labels != target
  flip = float(hit[other].mean()) if other.any() else float('nan')
  return {'asr': float(hit.mean()), 'flip_asr': flip}


def attack_success_rate(
  logits_fn: Callable[[jraph.GraphsTuple], jax.Array],
  batch: SubgraphBatch,
  trigger_fn: TriggerFn,
  target: int,
  *,
  defence: GraphFn | None = None,
  seed: int = 0,
) -> float:
  """Overall ASR: fraction of centres predicted as `target` once triggered.

  Target-class centres count too ("overall", as the released code).
  """
  pred = triggered_predictions(
    logits_fn, batch, trigger_fn, defence=defence, seed=seed
  )
  return float((pred == target).mean())


def accuracy(logits_fn, graph, labels, idx) -> float:
  """Accuracy of `logits_fn(graph)` on nodes `idx`."""
  logits = logits_fn(jax.tree.map(jnp.asarray, graph))
  idx = jnp.asarray(idx)
  return float((logits[idx].argmax(-1) == jnp.asarray(labels)[idx]).mean())
