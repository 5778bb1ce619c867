"""CP-GBA: a class-aware, queryable repository of real-subgraph triggers.

Pipeline (after the released `novdream/CP-GBA` code; deviations in the
package README):

1. `sample_bfs_subgraphs`: BFS orders of exactly n nodes from every node
   (up to `per_node` random orders each), de-duplicated.
2. `distil_repository`: embed each subgraph with the pre-trained GNN's
   first layer (flattened n x h), k-means into K clusters, keep the real
   subgraph nearest each centroid: its features (learnable) and edges.
3. `label_triggers`: attach each trigger to the centres of random 2-hop
   ego graphs; its label is the argmax of the mean logit shift at the
   centre, with a per-class cap ceil(K / C).
4. `TriggerRepository.__call__`: query by cosine similarity among
   triggers of the target label; attach to every trigger node with
   cos > threshold (else the most similar one); internal edges = original
   edges times straight-through gates.
5. Bi-level training against a frozen pre-trained GNN with a Gprompt prompt
   and head (`bilevel.run_bilevel`, homophily term, F and R queries).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from graph_attacks import cluster
from graph_attacks import functional
from graph_attacks import graph as graph_lib
from graph_attacks import models
from graph_attacks import triggers


def sample_bfs_subgraphs(
  graph, size: int, per_node: int, seed: int, max_subgraphs: int | None = None
) -> np.ndarray:
  """Connected node sets of exactly `size` nodes, from BFS orders.

  From every node, `per_node` BFS traversals with shuffled neighbour order
  each yield the first `size` nodes reached (skipped if the component is
  smaller). Duplicate node sets are removed.

  Returns:
    int `[S, size]`, each row in BFS order (row[0] the start node).
  """
  if size < 2:
    raise ValueError(f'trigger size {size} must be >= 2')
  n = graph.nodes.shape[0]
  if size > n:
    raise ValueError(f'trigger size {size} exceeds the graph ({n} nodes)')
  adj = graph_lib.adjacency_lists(graph)
  rng = np.random.RandomState(seed)
  seen, out = set(), []
  for start in rng.permutation(n):
    for _ in range(per_node):
      order, visited, queue = [int(start)], {int(start)}, [int(start)]
      while queue and len(order) < size:
        u = queue.pop(0)
        for v in rng.permutation(adj[u]):
          v = int(v)
          if v not in visited:
            visited.add(v)
            order.append(v)
            queue.append(v)
            if len(order) == size:
              break
      if len(order) == size:
        key = frozenset(order)
        if key not in seen:
          seen.add(key)
          out.append(order)
    if max_subgraphs is not None and len(out) >= max_subgraphs:
      break
  if not out:
    raise ValueError(
      f'no connected subgraph of {size} nodes exists in the graph'
    )
  return np.asarray(out, np.int32)


def subgraph_adjacency(graph, node_sets: np.ndarray) -> np.ndarray:
  """Original adjacency `[S, n, n]` (0/1) among each node set."""
  n = graph.nodes.shape[0]
  live = np.asarray(graph.edges) > 0
  keys = set(
    (
      np.asarray(graph.senders)[live].astype(np.int64) * n
      + np.asarray(graph.receivers)[live]
    ).tolist()
  )
  s, k = node_sets.shape
  adj = np.zeros((s, k, k), np.float32)
  for i in range(k):
    for j in range(k):
      if i != j:
        pair = node_sets[:, i].astype(np.int64) * n + node_sets[:, j]
        adj[:, i, j] = [p in keys for p in pair.tolist()]
  return adj


def embed_subgraphs(encoder: models.GCN, features, node_sets, adj):
  """First-layer embeddings of each isolated subgraph, flattened `[S, n h]`."""
  s, k = node_sets.shape
  feats = np.asarray(features)[node_sets].reshape(s * k, -1)
  ids = np.arange(s * k).reshape(s, k)
  sb, ii, jj = np.nonzero(adj)
  g = graph_lib.make_graph(feats, ids[sb, ii], ids[sb, jj])
  h = encoder.hidden_layers(jax.tree.map(jnp.asarray, g), n_layers=1)
  return np.asarray(h).reshape(s, -1)


def distil_repository(
  encoder: models.GCN,
  graph,
  num_triggers: int,
  size: int,
  *,
  per_node: int = 3,
  seed: int = 0,
  max_subgraphs: int | None = 20000,
):
  """Chooses K real subgraphs nearest K k-means centroids.

  Returns:
    (features `[K, n, F]`, adjacency `[K, n, n]`, node ids `[K, n]`).
  """
  sets = sample_bfs_subgraphs(graph, size, per_node, seed, max_subgraphs)
  if len(sets) < num_triggers:
    raise ValueError(
      f'only {len(sets)} distinct {size}-node subgraphs for '
      f'{num_triggers} triggers; lower num_triggers'
    )
  adj = subgraph_adjacency(graph, sets)
  emb = embed_subgraphs(encoder, graph.nodes, sets, adj)
  cents, _ = cluster.kmeans(
    jnp.asarray(emb), num_triggers, jax.random.key(seed)
  )
  d = np.asarray(cluster._sq_dists(jnp.asarray(emb), cents))  # [S, K]
  chosen, taken = [], set()
  for k in np.argsort(d.min(0)):  # tightest clusters pick first
    for s in np.argsort(d[:, k]):
      if int(s) not in taken:
        taken.add(int(s))
        chosen.append(int(s))
        break
  chosen = np.asarray(sorted(chosen))
  feats = np.asarray(graph.nodes)[sets[chosen]]
  return feats.astype(np.float32), adj[chosen], sets[chosen]


def cosine_matrix(x: jax.Array, p: jax.Array, eps: float = 1e-8):
  """cos(x_m, p_kj) for x `[M, F]`, p `[K, n, F]` -> `[M, K, n]` (a matmul)."""
  xn = triggers.l2_normalize(x, eps)
  pn = triggers.l2_normalize(p, eps)
  return jnp.einsum('mf,knf->mkn', xn, pn)


class TriggerRepository(nnx.Module):
  """Learnable trigger features P `[K, n, F]` with labels and gates."""

  def __init__(
    self,
    features,
    adjacency,
    *,
    homo_hidden: int = 128,
    threshold: float = 0.1,
    rngs: nnx.Rngs,
  ):
    k, n, f = features.shape
    self.size = n
    self.threshold = threshold
    self.features = nnx.Param(jnp.asarray(features))
    self.adjacency = nnx.Variable(jnp.asarray(adjacency))
    self.labels = nnx.Variable(jnp.zeros(k, jnp.int32))
    self.homo1 = nnx.Linear(f, homo_hidden, rngs=rngs)
    self.homo2 = nnx.Linear(
      homo_hidden, f, kernel_init=nnx.initializers.zeros, rngs=rngs
    )
    self.gate = nnx.Linear(f, n * (n - 1) // 2, rngs=rngs)
    self.gate.bias[...] = jnp.full(n * (n - 1) // 2, 2.0, jnp.float32)  # open

  def prompt_features(self, key=None) -> jax.Array:
    """P~ = P + MLP(P) `[K, n, F]` (dropout 0.5 inside when `key`)."""
    p = self.features[...]
    h = jax.nn.relu(self.homo1(p))
    h = models.dropout(h, 0.5, key)
    return p + self.homo2(h)

  def gated_adjacency(self, p_tilde) -> jax.Array:
    """Original edges times straight-through gates `[K, n, n]`."""
    probs = jax.nn.sigmoid(self.gate(p_tilde.mean(1)))
    gates = triggers.pairs_to_matrix(
      triggers.straight_through(probs), self.size
    )
    return self.adjacency[...] * gates

  def query(self, x, target, key=None, mode: str = 'eval'):
    """Retrieves and attaches triggers for targets `x` `[M, F]`.

    Args:
      x: target features.
      target: the target class y_t (scalar int, may be traced).
      key: PRNG key for dropout ('train'/'random') and R-mode choice.
      mode: 'eval' (F query), 'train' (F, dropout), 'random' (R, dropout).

    Returns:
      (feats `[M,n,F]`, inner `[M,n,n]`, attach `[M,n]`).
    """
    if mode not in ('eval', 'train', 'random'):
      raise ValueError(f'unknown query mode {mode!r}')
    k_drop = None if mode == 'eval' else jax.random.fold_in(key, 0)
    p = self.prompt_features(k_drop)
    adj = self.gated_adjacency(p)
    valid = self.labels[...] == target
    cos = cosine_matrix(x, p)  # [M, K, n]
    if mode == 'random':
      logits = jnp.where(valid, 0.0, -jnp.inf)
      k_sel = jax.random.categorical(
        jax.random.fold_in(key, 1), logits, shape=(x.shape[0],)
      )
    else:
      score = jnp.where(valid[None], cos.sum(-1), -jnp.inf)
      k_sel = jnp.argmax(score, axis=1)
    cos_sel = jnp.take_along_axis(cos, k_sel[:, None, None], 1)[:, 0]
    attach = (cos_sel > self.threshold).astype(x.dtype)
    best = jax.nn.one_hot(jnp.argmax(cos_sel, -1), self.size, dtype=x.dtype)
    attach = jnp.where(attach.sum(-1, keepdims=True) > 0, attach, best)
    return p[k_sel], adj[k_sel], attach


class QueryFn(nnx.Module):
  """Binds a repository to a target class: `(x, key, mode) -> trigger`."""

  def __init__(self, repository: TriggerRepository, target: int):
    self.repository = repository
    self.target = target

  def __call__(self, x, key=None, mode='eval'):
    return self.repository.query(x, self.target, key, mode)


def assign_capped(shift: np.ndarray, cap: int) -> np.ndarray:
  """Labels `[K]` from mean logit shifts `[K, C]` with at most `cap` each.

  Triggers are processed by decreasing max shift; each takes its best
  class that still has room.
  """
  k, c = shift.shape
  if cap * c < k:
    raise ValueError(f'cap {cap} x {c} classes cannot hold {k} triggers')
  labels = np.full(k, -1, np.int64)
  room = np.full(c, cap)
  for t in np.argsort(-shift.max(1), kind='stable'):
    for cls in np.argsort(-shift[t], kind='stable'):
      if room[cls] > 0:
        labels[t] = cls
        room[cls] -= 1
        break
  return labels


@jax.jit
def _label_shifts(classify, g, c, base, p, adj):
  """Mean logit shift `[K, C]` of each trigger attached to every centre."""
  m, n = c.shape[0], p.shape[1]

  def shift_of(fa):
    feats, a = fa
    trig = triggers.attach_triggers(
      g,
      c,
      jnp.broadcast_to(feats, (m, *feats.shape)),
      jnp.broadcast_to(a, (m, n, n)),
      jnp.ones((m, n)),
    )
    return (classify(trig)[c] - base).mean(0)

  return jax.lax.map(shift_of, (p, adj))


def label_triggers(
  repo: TriggerRepository,
  classifier,
  graph,
  centers,
  num_classes: int,
  hops: int = 2,
) -> np.ndarray:
  """Class-awareness: the mean logit shift each trigger causes.

  Every trigger is attached (original, ungated edges; all trigger nodes
  joined to the centre) to the centres of the 2-hop ego graphs of
  `centers`, batched as one disjoint union; the logit shift at the centres
  is averaged. Labels are assigned with the cap ceil(K / C) and stored in
  `repo.labels`.

  Returns:
    The mean shifts `[K, C]`.
  """
  from graph_attacks import evaluate  # local: evaluate imports triggers
  from graph_attacks import train as train_lib

  batch = evaluate.subgraph_batch(graph, centers, hops)
  g = jax.tree.map(jnp.asarray, batch.graph)
  c = jnp.asarray(batch.centers)
  base = train_lib.predict(classifier, g)[c]
  p = repo.prompt_features()
  adj = repo.adjacency[...]
  classify = functional.module_fn(classifier)
  # The union graph and the classifier are arguments, not constants: no
  # constant folding of the [U, F] union features at compile time.
  shift = np.asarray(_label_shifts(classify, g, c, base, p, adj))
  cap = math.ceil(p.shape[0] / num_classes)
  repo.labels[...] = jnp.asarray(assign_capped(shift, cap), jnp.int32)
  return shift
