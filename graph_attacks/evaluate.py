"""Batched inductive ASR on 2-hop subgraphs and clean accuracy.

The 2-hop subgraph of every attacked node is extracted once and the
subgraphs are stacked as one disjoint union (`jraph.batch`), padded to
power-of-two buckets. Message passing never crosses components, so one
forward pass over the union with a trigger attached to every centre equals
the code's 1-by-1 loop over nodes, at a few jitted calls instead of
thousands.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from graph_attacks import graph as graph_lib
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
    centers: int `[M]` index of each subgraph's centre in the union.
    nodes: int `[M]` the centres' ids in the original graph.
    num_real_nodes: nodes before padding.
  """

  graph: jraph.GraphsTuple
  centers: np.ndarray
  nodes: np.ndarray
  num_real_nodes: int


def subgraph_batch(
  graph: jraph.GraphsTuple, nodes, hops: int = 2
) -> SubgraphBatch:
  """Extracts and batches the `hops`-hop subgraph of every node in `nodes`."""
  nodes = np.asarray(nodes)
  if nodes.size == 0:
    raise ValueError('subgraph_batch needs at least one centre node')
  adj = graph_lib.adjacency_lists(graph)
  parts, centers, offset = [], [], 0
  for v in nodes:
    sub_nodes = graph_lib.k_hop_nodes(adj, int(v), hops)
    parts.append(graph_lib.induced_subgraph(graph, sub_nodes))
    centers.append(offset)
    offset += sub_nodes.size
  union = jraph.batch_np(parts)
  union = graph_lib.make_graph(
    union.nodes, union.senders, union.receivers, union.edges
  )
  return SubgraphBatch(
    graph=graph_lib.pad_to_bucket(union),
    centers=np.asarray(centers, np.int32),
    nodes=nodes,
    num_real_nodes=offset,
  )


def triggered(graph, centers, trigger_fn: TriggerFn, key):
  """Attaches `trigger_fn`'s trigger to every centre (jit-able)."""
  graph = jax.tree.map(jnp.asarray, graph)
  centers = jnp.asarray(centers)
  feats, inner, attach = trigger_fn(graph.nodes[centers], key)
  return triggers.attach_triggers(graph, centers, feats, inner, attach)


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
  g = triggered(batch.graph, batch.centers, trigger_fn, jax.random.key(seed))
  if defence is not None:
    g = defence(g)
  pred = jnp.argmax(logits_fn(g)[jnp.asarray(batch.centers)], -1)
  return float((pred == target).mean())


def accuracy(logits_fn, graph, labels, idx) -> float:
  """Accuracy of `logits_fn(graph)` on nodes `idx`."""
  logits = logits_fn(jax.tree.map(jnp.asarray, graph))
  idx = jnp.asarray(idx)
  return float((logits[idx].argmax(-1) == jnp.asarray(labels)[idx]).mean())
