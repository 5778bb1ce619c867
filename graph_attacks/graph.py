"""Node-classification graphs as `jraph.GraphsTuple` and NumPy graph helpers.

Conventions used throughout the package:

* A graph is a `jraph.GraphsTuple` whose `nodes` are features `[N, F]` and
  whose `edges` are non-negative edge weights `[E]`. Every undirected edge is
  stored in both directions and there are no self-loops (models add them).
* An edge of weight 0 is absent. Padding (to fixed bucket sizes, so `jit`
  sees few shapes) therefore adds zero-weight edges on a padding node, and
  attacks and defences remove edges by zeroing weights at fixed shapes.
"""

from __future__ import annotations

import dataclasses

import jraph
import numpy as np


@dataclasses.dataclass(frozen=True)
class NodeDataset:
  """A node-classification dataset.

  Attributes:
    graph: undirected graph; `nodes` float32 `[N, F]`, `edges` float32 `[E]`
      (all ones), `senders`/`receivers` int32 `[E]`.
    labels: int32 `[N]` in `[0, num_classes)`.
    num_classes: number of classes C.
    name: dataset name.
  """

  graph: jraph.GraphsTuple
  labels: np.ndarray
  num_classes: int
  name: str

  @property
  def num_nodes(self) -> int:
    return int(self.graph.nodes.shape[0])


@dataclasses.dataclass(frozen=True)
class Split:
  """Node index sets of one split (int32 arrays, disjoint where it matters).

  Attributes:
    train: labelled training nodes V_L.
    val: validation nodes.
    test: all test nodes (`clean_test` and `atk` together).
    clean_test: half of `test`, for clean accuracy.
    atk: the other half, for the attack success rate.
    unlabeled: nodes in none of the above (candidates for poisoning).
  """

  train: np.ndarray
  val: np.ndarray
  test: np.ndarray
  clean_test: np.ndarray
  atk: np.ndarray
  unlabeled: np.ndarray

  def mask(self, name: str, num_nodes: int) -> np.ndarray:
    """Boolean mask `[num_nodes]` of the index set `name`."""
    if name not in ('train', 'val', 'test', 'clean_test', 'atk', 'unlabeled'):
      raise ValueError(f'unknown split set {name!r}')
    m = np.zeros(num_nodes, bool)
    m[getattr(self, name)] = True
    return m


def make_graph(
  features: np.ndarray,
  senders: np.ndarray,
  receivers: np.ndarray,
  weights: np.ndarray | None = None,
) -> jraph.GraphsTuple:
  """Wraps arrays into a single-graph `GraphsTuple` (NumPy leaves)."""
  features = np.asarray(features, np.float32)
  senders = np.asarray(senders, np.int32)
  receivers = np.asarray(receivers, np.int32)
  if senders.shape != receivers.shape or senders.ndim != 1:
    raise ValueError(
      f'senders {senders.shape} and receivers {receivers.shape} must be '
      'equal 1-D shapes'
    )
  if weights is None:
    weights = np.ones(senders.shape, np.float32)
  n = features.shape[0]
  if senders.size and (
    min(senders.min(), receivers.min()) < 0
    or max(senders.max(), receivers.max()) >= n
  ):
    raise ValueError(f'edge endpoints must lie in [0, {n})')
  return jraph.GraphsTuple(
    nodes=features,
    edges=np.asarray(weights, np.float32),
    senders=senders,
    receivers=receivers,
    globals=None,
    n_node=np.array([n], np.int32),
    n_edge=np.array([senders.size], np.int32),
  )


def undirected_edges(
  senders: np.ndarray, receivers: np.ndarray, num_nodes: int
) -> tuple[np.ndarray, np.ndarray]:
  """Symmetrises, removes self-loops and duplicates; sorted by (s, r)."""
  s = np.concatenate([senders, receivers]).astype(np.int64)
  r = np.concatenate([receivers, senders]).astype(np.int64)
  keep = s != r
  key = np.unique(s[keep] * num_nodes + r[keep])
  return (key // num_nodes).astype(np.int32), (key % num_nodes).astype(np.int32)


def row_normalize(features: np.ndarray) -> np.ndarray:
  """Divides each row by its sum (rows summing to 0 stay 0). `[N, F]`."""
  features = np.asarray(features, np.float32)
  s = features.sum(1, keepdims=True)
  return np.where(s > 0, features / np.where(s > 0, s, 1.0), 0.0).astype(
    np.float32
  )


def subgraph_edges(
  graph: jraph.GraphsTuple, keep_nodes: np.ndarray
) -> jraph.GraphsTuple:
  """Keeps all nodes but only edges whose two endpoints are in `keep_nodes`."""
  keep = np.zeros(graph.nodes.shape[0], bool)
  keep[keep_nodes] = True
  e = keep[graph.senders] & keep[graph.receivers]
  return graph._replace(
    edges=graph.edges[e],
    senders=graph.senders[e],
    receivers=graph.receivers[e],
    n_edge=np.array([int(e.sum())], np.int32),
  )


def adjacency_lists(graph: jraph.GraphsTuple) -> list[np.ndarray]:
  """Neighbour index arrays per node (edges with weight > 0)."""
  n = graph.nodes.shape[0]
  live = np.asarray(graph.edges) > 0
  s, r = np.asarray(graph.senders)[live], np.asarray(graph.receivers)[live]
  order = np.argsort(s, kind='stable')
  s, r = s[order], r[order]
  bounds = np.searchsorted(s, np.arange(n + 1))
  return [r[bounds[i] : bounds[i + 1]] for i in range(n)]


def degrees(graph: jraph.GraphsTuple) -> np.ndarray:
  """Number of live out-edges per node `[N]`."""
  live = np.asarray(graph.edges) > 0
  return np.bincount(
    np.asarray(graph.senders)[live], minlength=graph.nodes.shape[0]
  )


def k_hop_nodes(adj: list[np.ndarray], center: int, hops: int) -> np.ndarray:
  """Nodes within `hops` of `center`, center first, then by BFS order."""
  seen = {center}
  order = [center]
  frontier = [center]
  for _ in range(hops):
    nxt = []
    for u in frontier:
      for v in adj[u]:
        v = int(v)
        if v not in seen:
          seen.add(v)
          order.append(v)
          nxt.append(v)
    frontier = nxt
  return np.asarray(order, np.int32)


def induced_subgraph(
  graph: jraph.GraphsTuple, nodes: np.ndarray
) -> jraph.GraphsTuple:
  """The subgraph induced by `nodes`, relabelled 0..len(nodes)-1 in order."""
  n = graph.nodes.shape[0]
  new_id = np.full(n, -1, np.int64)
  new_id[nodes] = np.arange(len(nodes))
  s, r = np.asarray(graph.senders), np.asarray(graph.receivers)
  e = (new_id[s] >= 0) & (new_id[r] >= 0)
  return make_graph(
    np.asarray(graph.nodes)[nodes],
    new_id[s[e]],
    new_id[r[e]],
    np.asarray(graph.edges)[e],
  )


def next_bucket(x: int, base: int = 64) -> int:
  """Smallest `base * 2**k >= x` (few distinct shapes for `jit`)."""
  b = base
  while b < x:
    b *= 2
  return b


def pad_graph(
  graph: jraph.GraphsTuple, n_node: int, n_edge: int
) -> jraph.GraphsTuple:
  """Pads one graph to exactly `n_node` nodes and `n_edge` edges.

  Padding nodes have zero features; padding edges have weight 0 and join the
  last padding node to itself, so they change no real node's output. Returns
  a single-graph `GraphsTuple` (`n_node` has one entry, the padded total);
  the real node count is the caller's to remember.
  """
  n, e = graph.nodes.shape[0], graph.senders.shape[0]
  if n_node <= n or n_edge < e:
    raise ValueError(
      f'cannot pad a graph of {n} nodes/{e} edges to {n_node}/{n_edge} '
      '(need n_node > nodes, n_edge >= edges)'
    )
  f = graph.nodes.shape[1:]
  nodes = np.concatenate(
    [np.asarray(graph.nodes), np.zeros((n_node - n, *f), np.float32)]
  )
  pad_e = n_edge - e
  fill = np.full(pad_e, n_node - 1, np.int32)
  return jraph.GraphsTuple(
    nodes=nodes,
    edges=np.concatenate(
      [np.asarray(graph.edges), np.zeros(pad_e, np.float32)]
    ),
    senders=np.concatenate([np.asarray(graph.senders), fill]).astype(np.int32),
    receivers=np.concatenate([np.asarray(graph.receivers), fill]).astype(
      np.int32
    ),
    globals=None,
    n_node=np.array([n_node], np.int32),
    n_edge=np.array([n_edge], np.int32),
  )


def half_octave_bucket(x: int, base: int = 64) -> int:
  """Smallest `base * 2**k` or `1.5 * base * 2**k` that is `>= x`.

  Twice as many shapes as `next_bucket`, at most 50% padding instead of
  100% (1201 nodes pad to 1536, not 2048: every layer and GRACE's
  N x N similarities shrink with it).
  """
  b = base
  while True:
    if b >= x:
      return b
    if b * 3 // 2 >= x:
      return b * 3 // 2
    b *= 2


def pad_to_bucket(graph: jraph.GraphsTuple) -> jraph.GraphsTuple:
  """Pads to the next half-octave buckets (at least one padding node)."""
  return pad_graph(
    graph,
    half_octave_bucket(graph.nodes.shape[0] + 1, 256),
    half_octave_bucket(graph.senders.shape[0], 1024),
  )


def pad_rows(x: np.ndarray, n: int, value=0) -> np.ndarray:
  """Pads the leading axis of `x` to `n` rows with `value`."""
  x = np.asarray(x)
  if x.shape[0] > n:
    raise ValueError(f'cannot pad {x.shape[0]} rows down to {n}')
  pad = np.full((n - x.shape[0], *x.shape[1:]), value, x.dtype)
  return np.concatenate([x, pad])
