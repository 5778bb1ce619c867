"""Tests for the backdoor controls, pytree callables and fast evaluation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from graph_attacks import baselines
from graph_attacks import defences
from graph_attacks import evaluate
from graph_attacks import functional
from graph_attacks import graph as graph_lib
from graph_attacks import models
from graph_attacks.pipeline import summary
from tests import tolerances


def _random_graph(n=40, e=70, f=4, seed=1):
  rng = np.random.RandomState(seed)
  s, r = graph_lib.undirected_edges(
    rng.randint(n, size=e), rng.randint(n, size=e), n
  )
  # Symmetric weights (both directions share one draw), some edges absent.
  table = rng.choice([0.0, 0.5, 1.0], size=(n, n)).astype(np.float32)
  w = table[np.minimum(s, r), np.maximum(s, r)]
  return graph_lib.make_graph(rng.rand(n, f), s, r, w)


def test_vectorised_subgraph_batch_equals_bfs_extraction():
  g = _random_graph()
  adj = graph_lib.adjacency_lists(g)
  centers = np.array([0, 7, 7, 13, 39])
  batch = evaluate.subgraph_batch(g, centers, hops=2)
  offset = 0
  for i, v in enumerate(centers):
    sub_nodes = graph_lib.k_hop_nodes(adj, int(v), 2)
    assert batch.centers[i] == offset
    # Same node set, centre first, same features and live-edge weights.
    got = slice(offset, offset + sub_nodes.size)
    ref = graph_lib.induced_subgraph(g, sub_nodes)
    feats = batch.graph.nodes[got]
    np.testing.assert_array_equal(feats[0], g.nodes[v])
    np.testing.assert_array_equal(
      np.sort(feats, axis=0), np.sort(np.asarray(ref.nodes), axis=0)
    )
    in_sub = (batch.graph.senders >= got.start) & (
      batch.graph.senders < got.stop
    )
    live = in_sub & (batch.graph.edges > 0)
    ref_live = np.asarray(ref.edges) > 0
    assert live.sum() == ref_live.sum()
    np.testing.assert_allclose(
      np.sort(batch.graph.edges[live]), np.sort(np.asarray(ref.edges)[ref_live])
    )
    offset += sub_nodes.size
  assert batch.num_real_nodes == offset


def test_batched_predictions_equal_one_by_one():
  g = _random_graph(f=3)
  model = models.build_model('gcn', 3, 8, 3, seed=0)
  centers = np.array([2, 11])
  batch = evaluate.subgraph_batch(g, centers)
  gen = baselines.Generator(3, 3, rngs=nnx.Rngs(1))
  trig = functional.module_fn(gen, 'eval')
  fn = functional.module_fn(model)
  prune = defences.prune_fn(0.2)
  fast = evaluate.triggered_predictions(fn, batch, trig, defence=prune)
  adj = graph_lib.adjacency_lists(g)
  for i, v in enumerate(centers):
    sub = graph_lib.induced_subgraph(g, graph_lib.k_hop_nodes(adj, v, 2))
    one = evaluate.triggered(sub, np.array([0]), trig, jax.random.key(0))
    one = defences.prune_edges(one, 0.2)
    assert int(np.argmax(model(one)[0])) == fast[i]


class ModuleFnTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_module_fn_is_a_traced_argument(self):
    model = models.build_model('gcn', 3, 4, 2, seed=0, dropout_rate=0.0)
    g = jax.tree.map(jnp.asarray, _random_graph(n=10, e=15, f=3))
    fn = functional.module_fn(model)
    leaves = jax.tree.leaves(fn)
    chex.assert_equal(len(leaves), len(jax.tree.leaves(nnx.state(model))))

    @self.variant
    def apply(f, graph):
      return f(graph)

    tol = tolerances.REDUCTION
    chex.assert_trees_all_close(apply(fn, g), model(g), rtol=tol, atol=tol)
    # Other weights through the same compiled function give other logits.
    other = functional.module_fn(
      models.build_model('gcn', 3, 4, 2, seed=1, dropout_rate=0.0)
    )
    assert not np.allclose(apply(other, g), apply(fn, g))


def test_success_rates_hand_case():
  # 5 centres, target 2: predicted 2 at centres 0, 1, 3; true class 2 at
  # centres 1 and 4. ASR 3/5; flip-ASR over centres 0, 2, 3: 2/3.
  r = evaluate.success_rates([2, 2, 0, 2, 1], [0, 2, 1, 0, 2], 2)
  np.testing.assert_allclose(r['asr'], 0.6)
  np.testing.assert_allclose(r['flip_asr'], 2 / 3)
  assert np.isnan(evaluate.success_rates([1], [2], 2)['flip_asr'])


def test_sba_trigger_is_a_pytree_module():
  real = np.arange(12, dtype=np.float32).reshape(3, 4)
  sba = baselines.SBATrigger(real, 3, 'gen', seed=0)
  fn = functional.module_fn(sba, 'eval')
  a = jax.jit(lambda f, x, k: f(x, k))(fn, jnp.ones((2, 4)), jax.random.key(3))
  b = sba(jnp.ones((2, 4)), jax.random.key(3))
  for x, y in zip(a, b, strict=True):
    np.testing.assert_allclose(x, y, rtol=tolerances.FEW_OPS, atol=1e-5)


def _rows(asr, clean_asr):
  return [
    {
      'rows': [
        {
          'attack': 'gta',
          'defence': 'none',
          'paradigm': 'gcn',
          'asr': a,
          'clean_asr': c,
          'ca': 0.8,
          'clean_ca': 0.85,
        }
      ]
    }
    for a, c in zip(asr, clean_asr, strict=True)
  ]


@pytest.mark.parametrize(
  'asr,clean_asr,want',
  [
    # A trigger that flips the clean victim as much: evasion, no backdoor.
    ((1.0, 1.0, 0.98), (1.0, 0.97, 1.0), 'no lift shown'),
    ((0.9, 0.95, 0.92), (0.1, 0.05, 0.2), 'backdoor'),
    ((0.9, 0.95), (0.1, 0.05), 'not shown (< 3 seeds)'),
  ],
)
def test_verdict_by_lift(asr, clean_asr, want):
  rows = summary._Rows(_rows(asr, clean_asr))
  eff = summary.lift_effect(rows, 'gta', 'none', 'gcn')
  np.testing.assert_allclose(
    eff.mean, np.mean(np.subtract(asr, clean_asr)), rtol=tolerances.ROUNDING
  )
  assert summary.verdict(eff) == want
