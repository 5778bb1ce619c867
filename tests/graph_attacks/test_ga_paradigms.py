"""Tests for GRACE, the prompts and link pre-training."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from graph_attacks import contrastive
from graph_attacks import graph as graph_lib
from graph_attacks import prompt


def _naive_grace(u, v, tau):
  def cos(a, b):
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))

  n = len(u)

  def ell(a, b, i):
    pos = np.exp(cos(a[i], b[i]) / tau)
    den = sum(np.exp(cos(a[i], b[k]) / tau) for k in range(n))
    den += sum(np.exp(cos(a[i], a[k]) / tau) for k in range(n) if k != i)
    return -np.log(pos / den)

  return np.mean([0.5 * (ell(u, v, i) + ell(v, u, i)) for i in range(n)])


def test_drop_view_rates():
  g = graph_lib.make_graph(np.ones((50, 40)), np.arange(49), np.arange(1, 50))
  g = jax.tree.map(jnp.asarray, g)
  out = contrastive.drop_view(g, jax.random.key(0), 1.0, 0.0)
  assert float(out.edges.sum()) == 0.0
  np.testing.assert_array_equal(out.nodes, g.nodes)
  out = contrastive.drop_view(g, jax.random.key(0), 0.0, 0.5)
  cols = np.asarray(out.nodes[0] > 0)
  assert 5 < cols.sum() < 35
  np.testing.assert_array_equal(out.nodes[:, ~cols], 0.0)


@pytest.mark.parametrize(
  'kind',
  ['gprompt']
  + [pytest.param(k, marks=pytest.mark.slow) for k in prompt.PROMPTS[1:]],
)
def test_prompt_trains_only_prompt_and_head(kind):
  rng = np.random.RandomState(0)
  y = np.repeat([0, 1], 10)
  x = (np.eye(2)[y] @ rng.randn(2, 6) + 0.1 * rng.randn(20, 6)).astype(
    np.float32
  )
  s, r = graph_lib.undirected_edges(np.arange(19), np.arange(1, 20), 20)
  g = graph_lib.make_graph(x, s, r)
  gnn = prompt.pretrain_edge_prediction(
    g, hidden=8, n_layers=2, epochs=5, learning_rate=0.01, seed=0
  )
  before = jax.tree.map(np.array, nnx.state(gnn))
  model = prompt.fit_prompt(
    gnn,
    g,
    y,
    np.ones(20),
    2,
    kind=kind,
    epochs=60,
    learning_rate=0.05,
    weight_decay=0.0,
    seed=0,
  )
  after = nnx.state(model.gnn)
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
    np.testing.assert_array_equal(a, b)
  assert model.kind == kind
  acc = (np.asarray(model(jax.tree.map(jnp.asarray, g))).argmax(1) == y).mean()
  assert acc > 0.8
  with pytest.raises(ValueError, match='unknown prompt'):
    prompt.PromptedGNN(gnn, 6, 8, 2, 'allinone', rngs=nnx.Rngs(0))


def test_gprompt_scales_embeddings():
  gnn = prompt.PretrainedGCN(3, 4, 2, rngs=nnx.Rngs(0))
  pm = prompt.PromptedGNN(gnn, 3, 4, 2, 'gprompt', rngs=nnx.Rngs(0))
  pm.weight[...] = jnp.array([[2.0, 0.0, 1.0, -1.0]])
  g = jax.tree.map(jnp.asarray, graph_lib.make_graph(np.eye(3), [0, 1], [1, 0]))
  np.testing.assert_allclose(pm.embed(g), gnn(g) * pm.weight[...], 1e-6)


class ParadigmLossVariantsTest(chex.TestCase):
  """The paradigms' losses under jit and without."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_grace_loss_matches_formula_and_masks_padding(self):
    rng = np.random.RandomState(0)
    u, v = rng.randn(4, 3), rng.randn(4, 3)
    grace = self.variant(contrastive.grace_loss)
    got = grace(jnp.asarray(u), jnp.asarray(v), 0.5)
    np.testing.assert_allclose(got, _naive_grace(u, v, 0.5), rtol=1e-5)
    up = np.concatenate([u, np.zeros((2, 3))])
    vp = np.concatenate([v, np.zeros((2, 3))])
    mask = jnp.array([1, 1, 1, 1, 0, 0])
    got_p = grace(jnp.asarray(up), jnp.asarray(vp), 0.5, mask)
    np.testing.assert_allclose(got_p, _naive_grace(u, v, 0.5), rtol=1e-5)
    g = self.variant(
      jax.grad(lambda a: contrastive.grace_loss(a, jnp.asarray(vp), 0.5, mask))
    )(jnp.asarray(up))
    chex.assert_tree_all_finite(g)

  @chex.variants(with_jit=True, without_jit=True)
  def test_class_weights_balance(self):
    w = self.variant(lambda y, m: contrastive.class_weights(y, m, 2))(
      jnp.array([0, 0, 0, 1]), jnp.ones(4)
    )
    np.testing.assert_allclose(w, [4 / 6, 4 / 6, 4 / 6, 2.0], rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_link_loss_hand_computed(self):
    z = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    loss = self.variant(prompt.link_loss)(
      z,
      (jnp.array([0]), jnp.array([1])),
      (jnp.array([0]), jnp.array([2])),
      jnp.ones(1),
    )
    expect = np.log1p(np.exp(-1.0)) + np.log1p(np.exp(0.0))
    np.testing.assert_allclose(loss, expect, rtol=1e-6)
