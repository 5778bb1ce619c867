"""Hyperparameters are traced: one compilation per shape, not per value,
and the traced optimizers equal the static ones they replace."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from graph_attacks import contrastive
from graph_attacks import defences
from graph_attacks import graph as graph_lib
from graph_attacks import models
from graph_attacks import prompt
from graph_attacks import train


def _graph(n=16, f=6, seed=0):
  rng = np.random.RandomState(seed)
  s, r = graph_lib.undirected_edges(np.arange(n), (np.arange(n) + 1) % n, n)
  return graph_lib.make_graph(rng.rand(n, f).astype(np.float32), s, r)


def _leaves(module):
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(module))]


def test_fit_classifier_compiles_once_for_new_learning_rates():
  g = _graph()
  y = np.arange(16) % 2
  mask = np.ones(16)
  kw = dict(epochs=3, seed=0)
  train.fit_classifier(
    models.build_model('gcn', 6, 4, 2, seed=0),
    g,
    y,
    mask,
    learning_rate=0.01,
    weight_decay=5e-4,
    **kw,
  )
  size = train._fit._cache_size()
  train.fit_classifier(
    models.build_model('gcn', 6, 4, 2, seed=0),
    g,
    y,
    mask,
    learning_rate=0.02,
    weight_decay=1e-3,
    **kw,
  )
  assert train._fit._cache_size() == size


def test_grace_traced_matches_static_adamw_and_compiles_once():
  g = _graph()
  kw = dict(
    num_real_nodes=16,
    hidden=4,
    proj=4,
    epochs=4,
    p_edge=(0.2, 0.4),
    p_feat=(0.3, 0.4),
    tau=0.4,
    seed=0,
  )
  enc = contrastive.train_grace(g, learning_rate=1e-2, weight_decay=1e-3, **kw)
  size = contrastive._train_grace._cache_size()
  contrastive.train_grace(g, learning_rate=2e-2, weight_decay=1e-4, **kw)
  assert contrastive._train_grace._cache_size() == size

  # The same run with the optimizer built from Python floats (static).
  model = contrastive.GRACE(6, 4, 4, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  graph = jax.tree.map(jnp.asarray, g)

  @jax.jit
  def static_run(state):
    def loss_fn(st, k):
      m = nnx.merge(graphdef, st)
      k1, k2 = jax.random.split(k)
      g1 = contrastive.drop_view(graph, k1, 0.2, 0.3)
      g2 = contrastive.drop_view(graph, k2, 0.4, 0.4)
      return contrastive.grace_loss(
        m.project(m(g1)), m.project(m(g2)), 0.4, jnp.ones(16)
      )

    tx = optax.adamw(1e-2, weight_decay=1e-3)
    return train.scan_fit(loss_fn, tx, state, jax.random.key(0), 4)[0]

  nnx.update(model, static_run(state))
  # Parameters of magnitude ~0.5: float32 rounding differences only.
  for a, b in zip(_leaves(enc), _leaves(model), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_pretrain_and_outlier_detector_compile_once():
  g = _graph()
  kw = dict(hidden=4, n_layers=2, epochs=3, seed=0)
  prompt.pretrain_edge_prediction(g, learning_rate=0.01, **kw)
  size = prompt._pretrain._cache_size()
  prompt.pretrain_edge_prediction(g, learning_rate=0.05, **kw)
  assert prompt._pretrain._cache_size() == size
  x = np.random.RandomState(0).rand(20, 6).astype(np.float32)
  defences.OutlierDetector(x, np.ones(20), epochs=3, learning_rate=1e-3)
  size = defences._train_ae._cache_size()
  defences.OutlierDetector(x, np.ones(20), epochs=3, learning_rate=1e-2)
  assert defences._train_ae._cache_size() == size
