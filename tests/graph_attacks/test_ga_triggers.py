"""Tests for trigger attachment, gates, homophily loss and batched ASR."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from graph_attacks import evaluate
from graph_attacks import graph as graph_lib
from graph_attacks import models
from graph_attacks import train
from graph_attacks import triggers


def _graph(n=6, f=3, seed=0):
  rng = np.random.RandomState(seed)
  s, r = graph_lib.undirected_edges(np.arange(n - 1), np.arange(1, n), n)
  return graph_lib.make_graph(rng.rand(n, f), s, r)


def test_attach_triggers_structure():
  g = jax.tree.map(jnp.asarray, _graph())
  feats = jnp.arange(2 * 3 * 3, dtype=jnp.float32).reshape(2, 3, 3)
  inner = jnp.broadcast_to(
    triggers.pairs_to_matrix(jnp.array([1.0, 0.0, 1.0]), 3), (2, 3, 3)
  )
  attach = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
  out = triggers.attach_triggers(g, jnp.array([0, 4]), feats, inner, attach)
  assert out.nodes.shape == (12, 3)
  assert out.senders.shape[0] == 10 + 2 * 6 + 2 * 6
  np.testing.assert_array_equal(out.nodes[6:], feats.reshape(6, 3))
  live = {
    (int(s), int(r))
    for s, r, w in zip(out.senders, out.receivers, out.edges, strict=True)
    if w > 0
  }
  assert (0, 6) in live and (6, 0) in live and (0, 7) not in live
  assert (4, 10) in live and (11, 4) in live and (4, 9) not in live
  assert (6, 7) in live and (7, 6) in live and (6, 8) not in live
  assert (7, 8) in live
  with pytest.raises(ValueError, match='shape mismatch'):
    triggers.attach_triggers(g, jnp.array([0]), feats, inner, attach)
  with pytest.raises(ValueError, match='width'):
    triggers.attach_triggers(
      g, jnp.array([0, 4]), feats[..., :2], inner, attach
    )


def test_gates_receive_gradient_through_gcn():
  g = jax.tree.map(jnp.asarray, _graph())
  model = models.build_model('gcn', 3, 4, 2, seed=0, dropout_rate=0.0)
  feats = jnp.ones((1, 3, 3))

  def loss(p):
    inner = triggers.pairs_to_matrix(triggers.straight_through(p), 3)
    out = triggers.attach_triggers(
      g, jnp.array([0]), feats, inner, jnp.ones((1, 3))
    )
    return model(out)[0, 0]

  grad = jax.grad(loss)(jnp.array([[0.9, 0.8, 0.2]]))
  assert np.abs(np.asarray(grad)).max() > 0


def test_subgraph_batch_equals_one_by_one():
  rng = np.random.RandomState(1)
  n = 30
  s, r = graph_lib.undirected_edges(
    rng.randint(n, size=50), rng.randint(n, size=50), n
  )
  g = graph_lib.make_graph(rng.rand(n, 4), s, r)
  model = models.build_model('gcn', 4, 8, 3, seed=0)
  centers = np.array([0, 5, 11])
  batch = evaluate.subgraph_batch(g, centers, hops=2)
  np.testing.assert_array_equal(batch.nodes, centers)

  def trig(x, key):
    m = x.shape[0]
    return (
      x[:, None, :] * jnp.ones((1, 2, 1)),
      jnp.ones((m, 2, 2)),
      jnp.ones((m, 2)),
    )

  g_b = evaluate.triggered(batch.graph, batch.centers, trig, jax.random.key(0))
  batched = train.predict(model, g_b)[batch.centers]
  adj = graph_lib.adjacency_lists(g)
  for i, v in enumerate(centers):
    sub = graph_lib.induced_subgraph(g, graph_lib.k_hop_nodes(adj, v, 2))
    one = evaluate.triggered(sub, np.array([0]), trig, jax.random.key(0))
    np.testing.assert_allclose(model(one)[0], batched[i], rtol=1e-4, atol=1e-5)
  target = int(np.argmax(np.bincount(np.asarray(batched.argmax(1)))))
  asr = evaluate.attack_success_rate(
    lambda x: train.predict(model, x), batch, trig, target
  )
  np.testing.assert_allclose(
    asr, float((np.asarray(batched).argmax(1) == target).mean())
  )


def test_k_hop_nodes_and_padding():
  adj = [np.array([1]), np.array([0, 2]), np.array([1, 3]), np.array([2])]
  np.testing.assert_array_equal(graph_lib.k_hop_nodes(adj, 0, 2), [0, 1, 2])
  g = _graph(4)
  p = graph_lib.pad_graph(g, 8, 10)
  assert p.nodes.shape == (8, 3) and p.senders.shape == (10,)
  assert float(p.edges[6:].sum()) == 0.0
  with pytest.raises(ValueError, match='cannot pad'):
    graph_lib.pad_graph(g, 4, 10)
  assert graph_lib.next_bucket(300, 256) == 512


class TriggerVariantsTest(chex.TestCase):
  """Trigger maths under jit and without."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_straight_through_forward_and_gradient(self):
    p = jnp.array([0.2, 0.7])
    st = self.variant(triggers.straight_through)
    np.testing.assert_array_equal(st(p), [0.0, 1.0])
    g = self.variant(
      jax.grad(
        lambda q: (triggers.straight_through(q) * jnp.array([3.0, 5.0])).sum()
      )
    )(p)
    np.testing.assert_array_equal(g, [3.0, 5.0])

  @chex.variants(with_jit=True, without_jit=True)
  def test_pairs_to_matrix(self):
    m = self.variant(lambda v: triggers.pairs_to_matrix(v, 3))(
      jnp.array([1.0, 2.0, 3.0])
    )
    chex.assert_shape(m, (3, 3))
    np.testing.assert_array_equal(m, [[0, 1, 2], [1, 0, 3], [2, 3, 0]])

  @chex.variants(with_jit=True, without_jit=True)
  def test_homophily_loss_hand_computed(self):
    tx = jnp.array([[1.0, 0.0]])
    feats = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])
    inner = jnp.array([[[0.0, 1.0], [1.0, 0.0]]])
    attach = jnp.array([[1.0, 1.0]])
    # attach cos: 1, 0 -> relu(.5-1)=0, relu(.5-0)=.5; inner cos 0 -> .5
    loss = self.variant(triggers.homophily_loss)(tx, feats, inner, attach, 0.5)
    chex.assert_shape(loss, ())
    np.testing.assert_allclose(loss, (0.0 + 0.5 + 0.5) / 3, rtol=1e-6)
