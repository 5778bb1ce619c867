"""CP-GBA step 0: supervised feature projection.

An MLP in -> d -> d -> C is trained on the labelled nodes; every node's
features are then replaced by the first ReLU layer's output `[N, d]`, so
one pre-trained GNN of input width d serves every dataset.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from graph_attacks import train as train_lib


class ProjectionMLP(nnx.Module):
  """in -> dim -> dim -> C with ReLU; `project` is the first layer."""

  def __init__(
    self, in_dim: int, dim: int, num_classes: int, *, rngs: nnx.Rngs
  ):
    self.l1 = nnx.Linear(in_dim, dim, rngs=rngs)
    self.l2 = nnx.Linear(dim, dim, rngs=rngs)
    self.l3 = nnx.Linear(dim, num_classes, rngs=rngs)

  def project(self, x):
    return jax.nn.relu(self.l1(x))

  def __call__(self, graph, key=None):
    del key
    return self.l3(jax.nn.relu(self.l2(self.project(graph.nodes))))


def project_features(
  graph,
  labels,
  train_mask,
  num_classes: int,
  *,
  dim: int,
  epochs: int,
  learning_rate: float = 1e-3,
  weight_decay: float = 5e-4,
  seed: int = 0,
):
  """Returns the graph with features replaced by the projection `[N, dim]`."""
  if dim < 1:
    raise ValueError(f'projection dim={dim} must be >= 1')
  mlp = ProjectionMLP(
    graph.nodes.shape[1], dim, num_classes, rngs=nnx.Rngs(seed)
  )
  mlp, _ = train_lib.fit_classifier(
    mlp,
    graph,
    labels,
    train_mask,
    epochs=epochs,
    learning_rate=learning_rate,
    weight_decay=weight_decay,
    seed=seed,
  )
  x = np.asarray(mlp.project(jnp.asarray(graph.nodes)), np.float32)
  return graph._replace(nodes=x)
