"""Tests for DPGBA's embedding InfoNCE term (w_E)."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from graph_attacks import baselines
from graph_attacks import bilevel
from graph_attacks import graph as graph_lib
from graph_attacks import models
from tests import tolerances


def test_embedding_infonce_hand_case():
  # Two triggered rows, one valid anchor (a second, invalid, is ignored).
  z = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  anchors = jnp.array([[1.0, 0.0], [5.0, 5.0]])
  ok = jnp.array([True, False])
  # Row 0: s(z0, a) = 1, s(z0, z1) = 0 -> l0 = log(e + 1) - 1.
  # Row 1: s(z1, a) = 0, s(z1, z0) = 0 -> l1 = log 2. Mean pair sim 0.
  want = 0.5 * ((np.log(np.e + 1.0) - 1.0) + np.log(2.0))
  got = bilevel.embedding_infonce(z, anchors, ok)
  np.testing.assert_allclose(float(got), want, rtol=tolerances.FEW_OPS)
  # Closer to the anchor, lower loss.
  near = bilevel.embedding_infonce(
    jnp.array([[1.0, 0.1], [0.9, 0.2]]), anchors, ok
  )
  assert float(near) < float(got)


def test_dpgba_epoch_with_embedding_term_trains_the_generator():
  rng = np.random.RandomState(0)
  n, f, c = 40, 6, 3
  s, r = graph_lib.undirected_edges(
    rng.randint(n, size=80), rng.randint(n, size=80), n
  )
  g = graph_lib.pad_to_bucket(graph_lib.make_graph(rng.rand(n, f), s, r))
  big = g.nodes.shape[0]
  labels = graph_lib.pad_rows(rng.randint(c, size=n), big)
  mask = graph_lib.pad_rows((np.arange(n) < 20).astype(np.float32), big)
  gen = baselines.Generator(f, 3, rngs=nnx.Rngs(0), detector_hidden=8)
  sur = models.GCN(f, 8, c, 2, 0.0, rngs=nnx.Rngs(1))
  before = jax.tree.map(np.asarray, nnx.state(gen, nnx.Param))
  cfg = bilevel.BilevelConfig(
    inner_steps=1,
    outer_size=8,
    adaptive_weight=True,
    lambda_detector=1.0,
    detector_steps=1,
    lambda_embed=3.0,
    embed_anchors=4,
  )
  hist = bilevel.run_bilevel(
    gen,
    sur,
    g,
    labels,
    mask,
    np.array([25, 26]),
    np.arange(20, 40),
    0,
    epochs=2,
    cfg=cfg,
    seed=0,
  )
  assert all(np.isfinite(h['outer_loss']) for h in hist)
  after = jax.tree.map(np.asarray, nnx.state(gen, nnx.Param))
  moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), before, after)
  assert max(jax.tree.leaves(moved)) > 0
