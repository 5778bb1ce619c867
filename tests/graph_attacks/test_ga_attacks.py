"""Tests for k-means/selection, CP-GBA's repository, baselines, defences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from graph_attacks import attacks
from graph_attacks import baselines
from graph_attacks import cluster
from graph_attacks import cpgba
from graph_attacks import defences
from graph_attacks import graph as graph_lib
from graph_attacks import models


def _ring(n=12, f=4, seed=0):
  rng = np.random.RandomState(seed)
  s, r = graph_lib.undirected_edges(np.arange(n), (np.arange(n) + 1) % n, n)
  return graph_lib.make_graph(rng.rand(n, f), s, r)


def test_kmeans_recovers_blobs():
  rng = np.random.RandomState(0)
  centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
  x = np.concatenate([c + 0.1 * rng.randn(20, 2) for c in centres])
  cents, assign = cluster.kmeans(jnp.asarray(x), 3, jax.random.key(0))
  found = np.sort(np.round(np.asarray(cents)).astype(int), axis=0)
  np.testing.assert_array_equal(found, np.sort(centres.astype(int), axis=0))
  assign = np.asarray(assign)
  for b in range(3):
    assert len(set(assign[b * 20 : (b + 1) * 20])) == 1


def test_cluster_degree_selection_prefers_central_nodes():
  emb = np.array([[0.0], [0.1], [5.0], [0.05], [10.0], [10.1]])
  deg = np.ones(6)
  chosen = cluster.cluster_degree_selection(
    emb, deg, np.arange(6), np.array([1, 2, 3]), 1, 2, seed=0
  )
  assert chosen.tolist() in ([1], [3])
  with pytest.raises(ValueError, match='cannot select 4'):
    cluster.cluster_degree_selection(
      emb, deg, np.arange(6), np.array([1, 2, 3]), 4, 2
    )


def test_bfs_subgraphs_connected_and_distinct():
  g = _ring(10)
  sets = cpgba.sample_bfs_subgraphs(g, 4, 3, seed=0)
  assert sets.shape[1] == 4
  assert len({frozenset(s) for s in sets.tolist()}) == len(sets)
  adj = cpgba.subgraph_adjacency(g, sets)
  for a in adj:  # a 4-node path on a ring has 3 edges, all connected
    assert a.sum() == 6
  with pytest.raises(ValueError, match='exceeds the graph'):
    cpgba.sample_bfs_subgraphs(g, 11, 1, seed=0)


def test_assign_capped():
  shift = np.array([[5.0, 1.0], [4.0, 3.0], [3.0, 0.0], [0.0, 1.0]])
  labels = cpgba.assign_capped(shift, 2)
  np.testing.assert_array_equal(labels, [0, 0, 1, 1])
  with pytest.raises(ValueError, match='cannot hold'):
    cpgba.assign_capped(shift, 1)


def test_query_picks_most_similar_trigger_of_target_class():
  feats = np.array(
    [
      [[1.0, 0.0], [1.0, 0.1]],  # class 0, aligned with x
      [[0.0, 1.0], [0.1, 1.0]],  # class 0, orthogonal
      [[1.0, 0.0], [1.0, 0.0]],  # class 1, best overall but wrong class
    ],
    np.float32,
  )
  adj = np.ones((3, 2, 2), np.float32) - np.eye(2)[None]
  repo = cpgba.TriggerRepository(
    feats, adj, homo_hidden=4, threshold=0.5, rngs=nnx.Rngs(0)
  )
  repo.labels[...] = jnp.array([0, 0, 1])
  x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  f, inner, attach = repo.query(x, 0)
  np.testing.assert_allclose(f[0], feats[0], atol=1e-6)
  np.testing.assert_allclose(f[1], feats[1], atol=1e-6)
  np.testing.assert_array_equal(attach, [[1, 1], [1, 1]])
  np.testing.assert_array_equal(inner[0], adj[0])  # gates start open
  f, _, _ = repo.query(x, 1)
  np.testing.assert_allclose(f[1], feats[2], atol=1e-6)
  # cos(x1, trigger-2 nodes) = 0 < 0.5: attach only to the argmax node.
  _, _, attach = repo.query(x, 1)
  assert attach[1].sum() == 1
  _, _, _ = repo.query(x, 0, jax.random.key(0), 'random')


def test_generator_shapes_and_sba():
  gen = baselines.Generator(4, 3, rngs=nnx.Rngs(0))
  f, inner, attach = gen(jnp.ones((5, 4)))
  assert f.shape == (5, 3, 4) and inner.shape == (5, 3, 3)
  np.testing.assert_array_equal(attach[:, 0], 1.0)
  np.testing.assert_array_equal(np.diagonal(inner, axis1=1, axis2=2), 0.0)
  real = np.arange(12, dtype=np.float32).reshape(3, 4)
  sba = baselines.SBATrigger(real, 3, 'samp', seed=0)
  f, inner, _ = sba(jnp.ones((4, 4)), jax.random.key(0))
  rows = {tuple(r) for r in real.tolist()}
  assert all(tuple(v) in rows for v in np.asarray(f).reshape(-1, 4).tolist())
  with pytest.raises(ValueError, match='unknown SBA kind'):
    baselines.SBATrigger(real, 3, 'copy')


def test_attack_validation_errors():
  with pytest.raises(ValueError, match='outside the label range'):
    attacks.validate('cpgba', 100, 7, 7, 5, 10, 50)
  with pytest.raises(ValueError, match='trigger size 200'):
    attacks.validate('cpgba', 100, 7, 0, 200, 10, 50)
  with pytest.raises(ValueError, match="unknown attack 'foo'"):
    attacks.validate('foo', 100, 7, 0, 5, 10, 50)
  with pytest.raises(ValueError, match='num_poison=60'):
    attacks.validate('gta', 100, 7, 0, 3, 60, 50)


def test_prune_edges_hand_case():
  g = graph_lib.make_graph(
    np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]]), [0, 1, 0, 2], [1, 0, 2, 0]
  )
  out = defences.prune_edges(jax.tree.map(jnp.asarray, g), 0.1)
  np.testing.assert_array_equal(out.edges, [1.0, 1.0, 0.0, 0.0])


def test_outlier_detector_flags_outliers():
  rng = np.random.RandomState(0)
  x = np.clip(0.5 + 0.05 * rng.randn(200, 12), 0, 1).astype(np.float32)
  x[:4] = (rng.rand(4, 12) > 0.5).astype(np.float32)
  od = defences.OutlierDetector(
    x, np.ones(200), epochs=50, learning_rate=1e-2, percentile=97.0
  )
  err = np.asarray(defences.reconstruction_error(od.ae, jnp.asarray(x)))
  np.testing.assert_array_equal(np.asarray(od.flags(x)), err > od.threshold)
  assert 4 <= (err > od.threshold).sum() <= 7
  assert err[:4].min() > np.median(err[4:])
  assert od.flags(x)[:4].all()
  g = graph_lib.make_graph(x, [0, 10], [10, 11])
  out = od.apply(jax.tree.map(jnp.asarray, g))
  np.testing.assert_array_equal(out.edges, [0.0, 1.0])
  with pytest.raises(ValueError, match='percentile'):
    defences.OutlierDetector(x, np.ones(200), percentile=100.0)


def test_kl_and_rigbd_flagging_stops_after_two_misses():
  p = jnp.log(jnp.array([[0.5, 0.5]]))
  q = jnp.log(jnp.array([[0.9, 0.1]]))
  expect = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)
  np.testing.assert_allclose(defences.kl_divergence(p, q), [expect], 1e-6)

  class Fixed(nnx.Module):
    def __call__(self, graph, key=None):
      # Node i's logits depend on its in-weight: dropping edges moves
      # high-degree nodes most.
      deg = jax.ops.segment_sum(
        graph.edges, graph.receivers, graph.nodes.shape[0]
      )
      return jnp.stack([deg, -deg], 1)

  n = 6
  s = [1, 2, 2, 3, 3, 3]
  r = [0, 0, 1, 0, 1, 2]
  s, r = s + r, r + s
  g = graph_lib.make_graph(np.zeros((n, 1)), s, r)
  labels = np.array([0, 0, 1, 1, 0, 0])
  flagged = defences.rigbd_flag(
    Fixed(), g, labels, np.arange(n), 0, passes=4, seed=0
  )
  assert set(flagged.tolist()) <= {0, 1, 4, 5}
  assert all(labels[v] == 0 for v in flagged)


def test_gcn_embed_shape():
  g = jax.tree.map(jnp.asarray, _ring())
  m = models.build_model('gcn', 4, 8, 2, seed=0, n_layers=3)
  assert m.embed(g).shape == (12, 8)
