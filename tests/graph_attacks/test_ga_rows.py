"""Tests for `rows.Rows` (union features as indexed rows) in the evaluation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from graph_attacks import baselines
from graph_attacks import defences
from graph_attacks import evaluate
from graph_attacks import functional
from graph_attacks import graph as graph_lib
from graph_attacks import models
from graph_attacks import prompt
from graph_attacks import rows
from tests import tolerances


class RowsTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_hand_case(self):
    # table rows a=[1,2], b=[3,4]; nodes (b, a, b); appended row c=[5,6].
    table = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    x = rows.Rows(table, jnp.array([1, 0, 1]))

    @self.variant
    def run(x):
      y = rows.append(x, jnp.array([[5.0, 6.0]]))
      doubled = rows.dense_rowwise(lambda t: 2.0 * t, y)
      summed = rows.dense_rowwise(lambda t: t.sum(-1), y)
      return rows.dense(y), doubled, summed, y[jnp.array([3, 0])]

    d, doubled, summed, picked = run(x)
    chex.assert_trees_all_equal(
      d, jnp.array([[3.0, 4.0], [1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    )
    chex.assert_trees_all_equal(doubled, 2.0 * d)
    chex.assert_trees_all_equal(summed, jnp.array([7.0, 3.0, 7.0, 11.0]))
    chex.assert_trees_all_equal(picked, jnp.array([[5.0, 6.0], [3.0, 4.0]]))
    assert x.shape == (3, 2) and x.ndim == 2
    # Plain arrays: the ordinary operations.
    a = jnp.ones((2, 2))
    chex.assert_trees_all_equal(rows.append(a, a).shape, (4, 2))
    chex.assert_trees_all_equal(rows.dense_rowwise(jnp.exp, a), jnp.exp(a))


def _graph(n=40, e=80, f=5, seed=3):
  rng = np.random.RandomState(seed)
  s, r = graph_lib.undirected_edges(
    rng.randint(n, size=e), rng.randint(n, size=e), n
  )
  return graph_lib.make_graph(rng.rand(n, f), s, r)


def _victims(f, c):
  gcn = models.build_model('gcn', f, 8, c, seed=0)
  sage = models.build_model('sage', f, 8, c, seed=1)
  gat = models.build_model('gat', f, 8, c, seed=2, heads=2)
  gnn = prompt.PretrainedGCN(f, 8, 2, rngs=nnx.Rngs(4))
  gpf = prompt.PromptedGNN(gnn, f, 8, c, 'gpf_plus', rngs=nnx.Rngs(5))
  return {'gcn': gcn, 'sage': sage, 'gat': gat, 'gpf_plus': gpf}


def test_indexed_union_equals_dense_union():
  """Every victim and defence: same logits on the Rows and dense unions."""
  g = _graph()
  f, c = 5, 3
  batch = evaluate.subgraph_batch(g, np.array([0, 4, 4, 17, 39]))
  assert isinstance(batch.graph.nodes, rows.Rows)
  # Padding nodes map to the table's zero row.
  np.testing.assert_array_equal(
    batch.dense_graph.nodes[batch.num_real_nodes :], 0.0
  )
  gen = baselines.Generator(f, 3, rngs=nnx.Rngs(1))
  trig = functional.module_fn(gen, 'eval')
  x = jnp.asarray(g.nodes)
  od = defences.OutlierDetector(x, np.ones(x.shape[0]), epochs=5, seed=0)
  fences = {'none': None, 'prune': defences.prune_fn(0.3), 'od': od.as_fn()}
  key = jax.random.key(0)
  sparse = jax.tree.map(jnp.asarray, batch.graph)
  dense = jax.tree.map(jnp.asarray, batch.dense_graph)
  cen = jnp.asarray(batch.centers)
  tol = tolerances.REDUCTION
  for name, model in _victims(f, c).items():
    for dname, dfn in fences.items():
      outs = []
      for u in (sparse, dense):
        t = evaluate.triggered(u, cen, trig, key)
        if dfn is not None:
          t = dfn(t)
        outs.append(np.asarray(model(t)))
      np.testing.assert_allclose(
        outs[0], outs[1], rtol=tol, atol=tol, err_msg=f'{name}/{dname}'
      )
