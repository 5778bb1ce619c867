"""Defences: cosine edge pruning, autoencoder outlier detection, RIGBD.

Prune and OD edit edge weights at fixed shapes, so they apply equally to a
training graph and to the batched test subgraphs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import optax
from flax import nnx

from graph_attacks import functional
from graph_attacks import rows
from graph_attacks import train as train_lib
from graph_attacks import triggers

DEFENCES = ('none', 'prune', 'od', 'rigbd')


def prune_edges(graph: jraph.GraphsTuple, threshold: float):
  """Zeroes every edge whose endpoint features have cosine <= threshold."""
  # Rows normalised once (on the distinct rows of a `rows.Rows` union).
  unit = rows.rowwise(triggers.l2_normalize, graph.nodes)
  cos = (unit[graph.senders] * unit[graph.receivers]).sum(-1)
  return graph._replace(edges=jnp.where(cos > threshold, graph.edges, 0.0))


class AutoEncoder(nnx.Module):
  """MLP d -> 2d/3 -> d/3 -> 2d/3 -> d with a sigmoid output (OD).

  `max_hidden` caps the first hidden width (and half of it the second):
  the released code's widths grow with d^2 (24.4M parameters at
  CiteSeer's 3703 features); capped at 512 the autoencoder has 4.1M there
  and Cora's (1433) 1.7M, and the CSBM graph's 500 features are below the
  cap (the code's widths).
  """

  def __init__(
    self, dim: int, *, rngs: nnx.Rngs, max_hidden: int | None = None
  ):
    h1, h2 = max(1, 2 * dim // 3), max(1, dim // 3)
    if max_hidden is not None:
      h1, h2 = min(h1, max_hidden), min(h2, max(1, max_hidden // 2))
    dims = [dim, h1, h2, h1, dim]
    self.layers = nnx.List(
      [
        nnx.Linear(a, b, rngs=rngs)
        for a, b in zip(dims[:-1], dims[1:], strict=True)
      ]
    )

  def __call__(self, x):
    for layer in self.layers[:-1]:
      x = jax.nn.relu(layer(x))
    return jax.nn.sigmoid(self.layers[-1](x))


def reconstruction_error(ae: AutoEncoder, x: jax.Array) -> jax.Array:
  """Per-node mean squared reconstruction error `[N]`."""
  return ((ae(x) - x) ** 2).mean(-1)


@functools.partial(jax.jit, static_argnames=('graphdef', 'epochs'))
def _train_ae(graphdef, state, x, mask, learning_rate, *, epochs):
  tx = optax.adam(learning_rate)

  def loss_fn(st):
    err = reconstruction_error(nnx.merge(graphdef, st), x)
    return (err * mask).sum() / jnp.maximum(mask.sum(), 1.0)

  def step(carry, _):
    st, opt = carry
    loss, g = jax.value_and_grad(loss_fn)(st)
    upd, opt = tx.update(g, opt, st)
    return (optax.apply_updates(st, upd), opt), loss

  (st, _), _ = jax.lax.scan(step, (state, tx.init(state)), None, epochs)
  return st


class OutlierDetector:
  """OD: an autoencoder on node features; flags errors above a percentile."""

  def __init__(
    self,
    x,
    real_mask,
    *,
    epochs: int = 300,
    learning_rate: float = 1e-3,
    percentile: float = 97.0,
    seed: int = 0,
    max_hidden: int | None = None,
  ):
    if not 0.0 < percentile < 100.0:
      raise ValueError(f'percentile={percentile} must lie in (0, 100)')
    x = jnp.asarray(x)
    mask = jnp.asarray(real_mask, jnp.float32)
    self.ae = AutoEncoder(
      x.shape[1], rngs=nnx.Rngs(seed), max_hidden=max_hidden
    )
    graphdef, state = nnx.split(self.ae)
    lr = train_lib.hyperparameter(learning_rate)
    nnx.update(
      self.ae, _train_ae(graphdef, state, x, mask, lr, epochs=int(epochs))
    )
    err = np.asarray(reconstruction_error(self.ae, x))
    self.threshold = float(
      np.percentile(err[np.asarray(real_mask) > 0], percentile)
    )

  def flags(self, x) -> jax.Array:
    """Boolean `[N]`: reconstruction error above the threshold."""
    return reconstruction_error(self.ae, jnp.asarray(x)) > self.threshold

  def apply(self, graph: jraph.GraphsTuple) -> jraph.GraphsTuple:
    """Removes (zero-weights) every edge touching a flagged node."""
    return cut_outliers(self.ae, self.threshold, graph)

  def as_fn(self) -> jax.tree_util.Partial:
    """`apply` as a pytree callable (a jitted function's argument)."""
    return jax.tree_util.Partial(
      cut_outliers, functional.module_fn(self.ae), jnp.float32(self.threshold)
    )


def cut_outliers(reconstruct, threshold, graph: jraph.GraphsTuple):
  """Zero-weights every edge touching a node whose error exceeds `threshold`.

  Args:
    reconstruct: the autoencoder, `x [N, F] -> [N, F]`.
    threshold: scalar reconstruction-error threshold.
    graph: the graph to clean.
  """
  # Per-node error, on the distinct rows when the nodes are `rows.Rows`.
  err = rows.dense_rowwise(
    lambda x: ((reconstruct(x) - x) ** 2).mean(-1), graph.nodes
  )
  bad = err > threshold
  cut = bad[graph.senders] | bad[graph.receivers]
  return graph._replace(edges=jnp.where(cut, 0.0, graph.edges))


def prune_fn(threshold: float) -> jax.tree_util.Partial:
  """`prune_edges(., threshold)` as a pytree callable."""
  return jax.tree_util.Partial(prune_edges, threshold=jnp.float32(threshold))


def drop_edges(graph: jraph.GraphsTuple, key, rate: float):
  """Zeroes each directed edge weight independently with probability `rate`."""
  keep = jax.random.bernoulli(key, 1.0 - rate, graph.edges.shape)
  return graph._replace(edges=graph.edges * keep.astype(graph.edges.dtype))


def kl_divergence(p_logits, q_logits) -> jax.Array:
  """KL(softmax(p) || softmax(q)) per row `[N]`."""
  lp = jax.nn.log_softmax(p_logits)
  lq = jax.nn.log_softmax(q_logits)
  return (jnp.exp(lp) * (lp - lq)).sum(-1)


def rigbd_flag(
  model,
  graph,
  labels,
  train_idx,
  target: int,
  *,
  passes: int = 10,
  drop_rate: float = 0.5,
  seed: int = 0,
) -> np.ndarray:
  """RIGBD's poisoned-node detection by random edge dropping.

  Sums KL(p_drop || p_orig) over `passes` random edge drops for every
  labelled training node, sorts descending and flags from the top until two
  consecutive nodes whose (possibly poisoned) label is not `target` appear.

  Returns:
    Indices (into the graph) of flagged nodes.
  """
  base = train_lib.predict(model, graph)
  score = jnp.zeros(base.shape[0])
  for i in range(passes):
    dropped = drop_edges(
      jax.tree.map(jnp.asarray, graph),
      jax.random.key(seed * 1000 + i),
      drop_rate,
    )
    score = score + kl_divergence(train_lib.predict(model, dropped), base)
  score = np.asarray(score)[train_idx]
  order = np.asarray(train_idx)[np.argsort(-score, kind='stable')]
  flagged, misses = [], 0
  for v in order:
    if int(labels[v]) != target:
      misses += 1
      if misses == 2:
        break
    else:
      misses = 0
      flagged.append(int(v))
  return np.asarray(flagged, np.int64)
