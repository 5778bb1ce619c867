"""GRACE graph contrastive learning plus a linear probe.

Two views per step: edges dropped (weights zeroed, fixed shape) with
probability p_e and feature columns masked with probability p_f. With
cosine similarity theta and temperature tau, the per-node loss is

  l(u_i, v_i) = -log e^{theta(u_i,v_i)/tau} /
      (sum_k e^{theta(u_i,v_k)/tau} + sum_{k != i} e^{theta(u_i,u_k)/tau}),

and J = (1/2N) sum_i [l(u_i, v_i) + l(v_i, u_i)] over real nodes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jraph
import optax
from flax import nnx

from graph_attacks import models
from graph_attacks import train as train_lib
from graph_attacks import triggers


class GRACE(nnx.Module):
  """GCN encoder (activation on every layer) plus projection head."""

  def __init__(self, in_dim: int, hidden: int, proj: int, *, rngs: nnx.Rngs):
    self.encoder = models.GCN(in_dim, 2 * hidden, hidden, 2, 0.0, rngs=rngs)
    self.fc1 = nnx.Linear(hidden, proj, rngs=rngs)
    self.fc2 = nnx.Linear(proj, hidden, rngs=rngs)

  def __call__(self, graph: jraph.GraphsTuple, key=None) -> jax.Array:
    """Node embeddings `[N, hidden]`."""
    del key
    return jax.nn.relu(self.encoder(graph))

  def project(self, z: jax.Array) -> jax.Array:
    return self.fc2(jax.nn.elu(self.fc1(z)))


def grace_loss(
  u: jax.Array, v: jax.Array, tau: float, mask: jax.Array | None = None
) -> jax.Array:
  """Symmetric GRACE InfoNCE loss.

  Args:
    u, v: projected embeddings of the two views `[N, D]`.
    tau: temperature.
    mask: `[N]` 1 for real nodes (0 for padding); default all real.

  Returns:
    Scalar J.
  """
  n = u.shape[0]
  mask = jnp.ones(n) if mask is None else mask.astype(u.dtype)
  un = triggers.l2_normalize(u)
  vn = triggers.l2_normalize(v)
  eye = jnp.eye(n, dtype=bool)
  col = mask[None, :] > 0

  # Multiply by 1/tau (not divide): with tau a Python constant XLA rewrites
  # the division that way, so a traced tau gives the same numbers.
  inv_tau = 1.0 / tau

  def one_side(a, b):
    between = (a @ b.T) * inv_tau
    refl = (a @ a.T) * inv_tau
    neg = jnp.concatenate(
      [
        jnp.where(col, between, -jnp.inf),
        jnp.where(col & ~eye, refl, -jnp.inf),
      ],
      axis=1,
    )
    return jax.nn.logsumexp(neg, axis=1) - jnp.diagonal(between)

  per = 0.5 * (one_side(un, vn) + one_side(vn, un))
  return (per * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def drop_view(graph, key, p_edge: float, p_feat: float):
  """Zeroes each edge weight w.p. `p_edge`, each feature column w.p. p_feat.

  Undirected pairs are dropped independently per direction, as GRACE's
  `dropout_adj` on a directed edge list does.
  """
  ke, kf = jax.random.split(key)
  keep_e = jax.random.bernoulli(ke, 1.0 - p_edge, graph.edges.shape)
  keep_f = jax.random.bernoulli(kf, 1.0 - p_feat, graph.nodes.shape[1:])
  return graph._replace(
    nodes=graph.nodes * keep_f[None].astype(graph.nodes.dtype),
    edges=graph.edges * keep_e.astype(graph.edges.dtype),
  )


@functools.partial(jax.jit, static_argnames=('graphdef', 'epochs', 'rows'))
def _train_grace(
  graphdef, state, graph, node_mask, key, hparams, *, epochs, rows
):
  # Hyperparameters are traced scalars: one compilation serves every value.
  tau, p_edge, p_feat = hparams['tau'], hparams['p_edge'], hparams['p_feat']
  tx = optax.adamw(
    hparams['learning_rate'], weight_decay=hparams['weight_decay']
  )

  def loss_fn(st, k):
    model = nnx.merge(graphdef, st)
    k1, k2 = jax.random.split(k)
    g1 = drop_view(graph, k1, p_edge[0], p_feat[0])
    g2 = drop_view(graph, k2, p_edge[1], p_feat[1])
    # The loss reads the first `rows` nodes (the real ones, rounded up):
    # its N x N similarities skip the padding.
    z1, z2 = model(g1)[:rows], model(g2)[:rows]
    return grace_loss(
      model.project(z1), model.project(z2), tau, node_mask[:rows]
    )

  return train_lib.scan_fit(loss_fn, tx, state, key, epochs)


def train_grace(
  graph: jraph.GraphsTuple,
  *,
  num_real_nodes: int,
  hidden: int,
  proj: int,
  epochs: int,
  learning_rate: float,
  weight_decay: float,
  p_edge: tuple[float, float],
  p_feat: tuple[float, float],
  tau: float,
  seed: int,
) -> GRACE:
  """Trains a GRACE encoder on `graph` (first `num_real_nodes` are real)."""
  if tau <= 0:
    raise ValueError(f'tau={tau} must be > 0')
  model = GRACE(graph.nodes.shape[1], hidden, proj, rngs=nnx.Rngs(seed))
  graphdef, state = nnx.split(model)
  mask = jnp.arange(graph.nodes.shape[0]) < num_real_nodes
  hp = train_lib.hyperparameter
  hparams = {
    'learning_rate': hp(learning_rate),
    'weight_decay': hp(weight_decay),
    'p_edge': tuple(hp(p) for p in p_edge),
    'p_feat': tuple(hp(p) for p in p_feat),
    'tau': hp(tau),
  }
  st, losses = _train_grace(
    graphdef,
    state,
    jax.tree.map(jnp.asarray, graph),
    mask,
    jax.random.key(seed),
    hparams,
    epochs=int(epochs),
    # Real nodes rounded up to 128 (few compilations across graph sizes).
    rows=min(graph.nodes.shape[0], -(-int(num_real_nodes) // 128) * 128),
  )
  if not bool(jnp.isfinite(losses).all()):
    raise FloatingPointError(
      f'non-finite GRACE loss at epoch {int(jnp.argmin(jnp.isfinite(losses)))}'
    )
  nnx.update(model, st)
  return model


class ProbedEncoder(nnx.Module):
  """A frozen encoder (attribute `gnn`) with a linear probe on top."""

  def __init__(
    self, gnn: nnx.Module, dim: int, num_classes: int, *, rngs: nnx.Rngs
  ):
    self.gnn = gnn
    self.probe = nnx.Linear(dim, num_classes, rngs=rngs)

  def __call__(self, graph, key=None):
    return self.probe(jax.lax.stop_gradient(self.gnn(graph)))


def class_weights(labels, mask, num_classes: int) -> jax.Array:
  """Per-node weights n / (C * n_c) over masked nodes (balanced CE)."""
  mask = jnp.asarray(mask, jnp.float32)
  counts = jax.ops.segment_sum(mask, jnp.asarray(labels), num_classes)
  w = mask.sum() / (num_classes * jnp.maximum(counts, 1.0))
  return w[jnp.asarray(labels)] * mask


def fit_probe(
  encoder: GRACE,
  graph,
  labels,
  train_mask,
  num_classes: int,
  *,
  epochs: int,
  learning_rate: float,
  weight_decay: float,
  seed: int,
) -> ProbedEncoder:
  """Class-weighted linear probe on the frozen encoder's embeddings."""
  dim = encoder.fc2.out_features
  model = ProbedEncoder(encoder, dim, num_classes, rngs=nnx.Rngs(seed))
  weights = class_weights(labels, train_mask, num_classes)
  model, _ = train_lib.fit_classifier(
    model,
    graph,
    labels,
    weights,
    epochs=epochs,
    learning_rate=learning_rate,
    weight_decay=weight_decay,
    seed=seed,
    frozen=nnx.PathContains('gnn'),
  )
  return model
