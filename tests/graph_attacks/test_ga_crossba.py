"""CrossBA: the objectives by hand, the trigger graph, node selection, the
backdooring loop, and its place in the pipeline (no poisoned node, prompt
paradigms only)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import schema
from experiments.graph_attacks.configs import tiny
from graph_attacks import attacks
from graph_attacks import config as config_lib
from graph_attacks import crossba
from graph_attacks import graph as graph_lib
from graph_attacks import prompt as prompt_lib
from graph_attacks.pipeline import attack_run
from tests import tolerances


def _graph(n=30, e=60, f=5, seed=0):
  rng = np.random.RandomState(seed)
  s, r = graph_lib.undirected_edges(
    rng.randint(n, size=e), rng.randint(n, size=e), n
  )
  return graph_lib.make_graph(
    rng.rand(n, f).astype(np.float32), s, r, np.ones(len(s), np.float32)
  )


class ObjectivesTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_trigger_loss_by_hand(self):
    # cos(z~, t) = (1, 0) cosines: node 0 on t, node 1 orthogonal: mean 0.5.
    # cos(z, z~): node 0 equal (1), node 1 opposite (-1): mean 0.
    # cos(P_i, x_s): P = [(1, 0)], x = [(1, 0), (0, 1)]: mean 0.5.
    # r_n = 0.1, r_f = 0.2: 0.7 * -0.5 + 0.1 * 0 + 0.2 * -0.5 = -0.45.
    # Dormancy: z0~ = [(1, 0), (1, 0)], cos with t 1, r_d = 0.5: + 0.5.
    t = jnp.array([1.0, 0.0])
    z_trig = jnp.array([[2.0, 0.0], [0.0, 3.0]])
    z_clean = jnp.array([[1.0, 0.0], [0.0, -1.0]])
    feats = jnp.array([[1.0, 0.0]])
    x_s = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    fn = self.variant(crossba.trigger_loss)
    got = fn(z_clean, z_trig, t, feats, x_s, 0.1, 0.2)
    assert float(got) == pytest.approx(-0.45, abs=tolerances.ROUNDING)
    z0 = jnp.array([[1.0, 0.0], [5.0, 0.0]])
    got = fn(z_clean, z_trig, t, feats, x_s, 0.1, 0.2, z0, 0.5)
    assert float(got) == pytest.approx(0.05, abs=tolerances.ROUNDING)

  @chex.variants(with_jit=True, without_jit=True)
  def test_backbone_loss_by_hand(self):
    # -cos(z~, t): node 0 at 45 degrees (1/sqrt 2): -0.7071.
    # -cos(z, z0): equal rows (1) and orthogonal rows (0): -0.5.
    # r_g = 0.5: 0.5 * -0.7071 + 0.5 * -0.5 = -0.60355.
    t = jnp.array([1.0, 0.0])
    z_trig = jnp.array([[1.0, 1.0]])
    z_all = jnp.array([[1.0, 2.0], [1.0, 0.0]])
    z_ref = jnp.array([[2.0, 4.0], [0.0, 1.0]])
    got = self.variant(crossba.backbone_loss)(z_trig, t, z_all, z_ref, 0.5)
    want = 0.5 * -(2**-0.5) + 0.5 * -0.5
    assert float(got) == pytest.approx(want, abs=tolerances.ROUNDING)

  def test_zero_vectors_do_not_divide_by_zero(self):
    z = jnp.zeros((2, 3))
    got = crossba.backbone_loss(z, jnp.ones(3), z, z, 0.5)
    assert np.isfinite(float(got))


def test_trigger_is_a_clique_linked_by_node_zero():
  p = jnp.arange(6.0).reshape(3, 2)
  feats, inner, attach = crossba.Trigger(p)(jnp.zeros((4, 2)))
  chex.assert_shape((feats, inner, attach), ((4, 3, 2), (4, 3, 3), (4, 3)))
  # Exact: copies and 0/1 constants.
  np.testing.assert_array_equal(feats[2], p)
  np.testing.assert_array_equal(inner[0], 1.0 - np.eye(3))
  np.testing.assert_array_equal(attach, np.tile([1.0, 0.0, 0.0], (4, 1)))


def test_select_nodes_lowest_degree_and_random():
  g = _graph()
  cand = np.arange(5, 25)
  got = crossba.select_nodes(g, cand, 0.2, 'degree_min', 0)
  deg = graph_lib.degrees(g)
  assert len(got) == 4
  assert deg[got].max() <= np.sort(deg[cand])[3]
  rnd = crossba.select_nodes(g, cand, 0.2, 'random', 0)
  assert len(rnd) == 4 and np.isin(rnd, cand).all()
  assert len(crossba.select_nodes(g, cand, 0.001, 'random', 0)) == 1
  with pytest.raises(ValueError, match='selection'):
    crossba.select_nodes(g, cand, 0.2, 'highest', 0)


def _backdoor(g, backbone, attacked, t, **kw):
  args = dict(
    size=3,
    epochs=60,
    trigger_steps=1,
    gnn_steps=1,
    trigger_learning_rate=0.01,
    gnn_learning_rate=0.01,
    reg_trigger_n=0.05,
    reg_trigger_f=0.05,
    reg_gnn=0.5,
    seed=0,
  )
  args.update(kw)
  return crossba.backdoor(backbone, g, attacked, t, **args)


def test_backdoor_pulls_triggered_nodes_to_target_and_keeps_the_input():
  g = _graph()
  backbone = prompt_lib.pretrain_edge_prediction(
    g, hidden=8, n_layers=2, epochs=20, learning_rate=0.01, seed=0
  )
  before = np.asarray(backbone(jax.tree.map(jnp.asarray, g)))
  attacked = np.array([1, 4, 9])
  t = crossba.target_embedding(backbone, g, [2, 3])
  bd, trigger, hist = _backdoor(g, backbone, attacked, t, reg_dormant=0.5)
  # The clean backbone is not modified (a copy is backdoored): exact, the
  # same program on the same inputs.
  np.testing.assert_array_equal(
    np.asarray(backbone(jax.tree.map(jnp.asarray, g))), before
  )
  assert hist.target_cos[-1] > hist.target_cos[0]
  assert hist.target_cos[-1] > 0.9
  assert hist.clean_cos[-1] > 0.5  # clean embeddings stay close to z0
  chex.assert_shape(trigger.feats[...], (3, g.nodes.shape[1]))
  assert bd is not backbone


def test_fixed_trigger_keeps_its_initialisation():
  g = _graph()
  backbone = prompt_lib.pretrain_edge_prediction(
    g, hidden=8, n_layers=2, epochs=5, learning_rate=0.01, seed=0
  )
  t = crossba.target_embedding(backbone, g, [2])
  _, a, _ = _backdoor(g, backbone, np.array([1]), t, trigger_steps=0)
  _, b, _ = _backdoor(g, backbone, np.array([1]), t, trigger_steps=0, epochs=3)
  # Exact: never updated, the same seeded initialisation.
  np.testing.assert_array_equal(a.feats[...], b.feats[...])


def test_bad_settings_are_named():
  g = _graph()
  backbone = prompt_lib.pretrain_edge_prediction(
    g, hidden=8, n_layers=2, epochs=2, learning_rate=0.01, seed=0
  )
  with pytest.raises(ValueError, match='reg_trigger_n'):
    _backdoor(
      g,
      backbone,
      np.array([1]),
      jnp.ones(8),
      reg_trigger_n=0.6,
      reg_trigger_f=0.5,
    )
  with pytest.raises(ValueError, match='target-class node'):
    crossba.target_embedding(backbone, g, [])
  c = tiny.get_config()
  c.attack.crossba.reg_trigger_f = 0.97
  with pytest.raises(schema.ConfigError, match='reg_trigger_n'):
    config_lib.validate_config(c)
  c = tiny.get_config()
  c.attack.crossba.selection = 'highest'
  with pytest.raises(schema.ConfigError, match='selection'):
    config_lib.validate_config(c)


def test_pipeline_poisons_nothing_and_attacks_prompt_paradigms_only():
  c = tiny.get_config()
  runs = list(attack_run.victim_runs(c, 'crossba'))
  # tiny: defences none and prune, Gprompt the only prompt paradigm (not
  # in defence_paradigms): CrossBA's victim runs under both.
  assert runs == [('none', 'gprompt'), ('prune', 'gprompt')]
  assert ('none', 'gcn') in list(attack_run.victim_runs(c, 'cpgba'))
  g = _graph()
  labels = np.arange(30) % 3
  mask = np.zeros(30, np.float32)
  mask[:6] = 1.0
  atk = attacks.TrainedAttack(
    'crossba', np.zeros(0, np.int64), 0, None, 3, 0.0, []
  )
  g2, y2, m2 = attacks.poison(g, labels, mask, atk)
  # Exact: nothing attached, nothing relabelled.
  np.testing.assert_array_equal(g2.nodes, g.nodes)
  np.testing.assert_array_equal(y2, labels)
  np.testing.assert_array_equal(m2, mask)
