"""Graph prompt learning: an edge-prediction pre-trained GCN, frozen, with
a GraphPrompt (Gprompt), GPF or GPF-plus prompt and a linear answer head.

* Gprompt: h' = h * w, w in R^{1 x D} (init ones), on the GNN output.
* GPF: x' = x + p, p in R^{1 x F} (init zeros), on the input features.
* GPF-plus: x' = x + softmax(x A) P, A in R^{F x k}, P in R^{k x F}.

Pre-training is link prediction: BCE on sigmoid(z_u . z_v) for the graph's
edges against as many uniformly drawn node pairs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jraph
import optax
from flax import nnx

from graph_attacks import models
from graph_attacks import rows
from graph_attacks import train as train_lib

PROMPTS = ('gprompt', 'gpf', 'gpf_plus')


class PretrainedGCN(nnx.Module):
  """GCN encoder with ReLU between layers and a linear last layer."""

  def __init__(
    self, in_dim: int, hidden: int, n_layers: int, *, rngs: nnx.Rngs
  ):
    self.gcn = models.GCN(in_dim, hidden, hidden, n_layers, 0.0, rngs=rngs)

  def __call__(self, graph, key=None):
    del key
    return self.gcn(graph)


def link_loss(z: jax.Array, pos: tuple, neg: tuple, pos_w: jax.Array):
  """BCE of sigmoid(z_s . z_r): positive pairs (weights `pos_w`) vs negative.

  Args:
    z: embeddings `[N, D]`.
    pos, neg: (senders, receivers) index pairs `[E]`, `[M]`.
    pos_w: `[E]` 1 for real edges, 0 for padding.
  """
  sp = (z[pos[0]] * z[pos[1]]).sum(-1)
  sn = (z[neg[0]] * z[neg[1]]).sum(-1)
  lp = (
    optax.sigmoid_binary_cross_entropy(sp, jnp.ones_like(sp)) * pos_w
  ).sum() / jnp.maximum(pos_w.sum(), 1.0)
  ln = optax.sigmoid_binary_cross_entropy(sn, jnp.zeros_like(sn)).mean()
  return lp + ln


@functools.partial(jax.jit, static_argnames=('graphdef', 'epochs', 'num_nodes'))
def _pretrain(graphdef, state, graph, key, learning_rate, *, epochs, num_nodes):
  tx = optax.adam(learning_rate)
  e = graph.senders.shape[0]
  pos_w = (graph.edges > 0).astype(jnp.float32)

  def loss_fn(st, k):
    z = nnx.merge(graphdef, st)(graph)
    neg = jax.random.randint(k, (2, e), 0, num_nodes)
    return link_loss(
      z, (graph.senders, graph.receivers), (neg[0], neg[1]), pos_w
    )

  return train_lib.scan_fit(loss_fn, tx, state, key, epochs)


def pretrain_edge_prediction(
  graph: jraph.GraphsTuple,
  *,
  hidden: int,
  n_layers: int,
  epochs: int,
  learning_rate: float,
  seed: int,
  num_real_nodes: int | None = None,
) -> PretrainedGCN:
  """Pre-trains a GCN by link prediction on `graph`'s live edges."""
  n = graph.nodes.shape[0] if num_real_nodes is None else num_real_nodes
  model = PretrainedGCN(
    graph.nodes.shape[1], hidden, n_layers, rngs=nnx.Rngs(seed)
  )
  graphdef, state = nnx.split(model)
  st, losses = _pretrain(
    graphdef,
    state,
    jax.tree.map(jnp.asarray, graph),
    jax.random.key(seed),
    train_lib.hyperparameter(learning_rate),
    epochs=int(epochs),
    num_nodes=int(n),
  )
  if not bool(jnp.isfinite(losses).all()):
    raise FloatingPointError('non-finite link-prediction loss in pre-training')
  nnx.update(model, st)
  return model


class PromptedGNN(nnx.Module):
  """Frozen GNN `gnn` + a prompt + a linear answer head.

  Train with `train.fit_classifier(..., frozen=nnx.PathContains('gnn'))`.
  """

  def __init__(
    self,
    gnn: PretrainedGCN,
    in_dim: int,
    hidden: int,
    num_classes: int,
    kind: str = 'gprompt',
    basis: int = 10,
    *,
    rngs: nnx.Rngs,
  ):
    if kind not in PROMPTS:
      raise ValueError(f'unknown prompt {kind!r}; allowed: {PROMPTS}')
    self.gnn = gnn
    self.kind = kind
    if kind == 'gprompt':
      self.weight = nnx.Param(jnp.ones((1, hidden)))
    elif kind == 'gpf':
      self.token = nnx.Param(jnp.zeros((1, in_dim)))
    else:
      init = nnx.initializers.glorot_uniform()
      self.attn = nnx.Linear(in_dim, basis, rngs=rngs)
      self.basis = nnx.Param(init(rngs.params(), (basis, in_dim)))
    self.head = nnx.Linear(hidden, num_classes, rngs=rngs)

  def prompt_features(self, x: jax.Array) -> jax.Array:
    if self.kind == 'gpf':
      return x + self.token[...]
    if self.kind == 'gpf_plus':
      return x + jax.nn.softmax(self.attn(x), -1) @ self.basis[...]
    return x

  def embed(self, graph, key=None):
    del key
    # Prompts act per node: on the distinct rows of a `rows.Rows` union.
    x = rows.rowwise(self.prompt_features, graph.nodes)
    h = self.gnn(graph._replace(nodes=x))
    if self.kind == 'gprompt':
      h = h * self.weight[...]
    return h

  def __call__(self, graph, key=None):
    return self.head(self.embed(graph))


def fit_prompt(
  gnn: PretrainedGCN,
  graph,
  labels,
  train_mask,
  num_classes: int,
  *,
  kind: str,
  epochs: int,
  learning_rate: float,
  weight_decay: float,
  seed: int,
) -> PromptedGNN:
  """Tunes a prompt and head on `graph`, the pre-trained GNN frozen."""
  hidden = gnn.gcn.layers[-1].out_features
  model = PromptedGNN(
    gnn, graph.nodes.shape[1], hidden, num_classes, kind, rngs=nnx.Rngs(seed)
  )
  model, _ = train_lib.fit_classifier(
    model,
    graph,
    labels,
    train_mask,
    epochs=epochs,
    learning_rate=learning_rate,
    weight_decay=weight_decay,
    seed=seed,
    frozen=nnx.PathContains('gnn'),
  )
  return model
