"""Tests for the pieces that let the package scale: bit-mask dropout,
half-octave padding, the capped OD autoencoder, per-dataset configs, and
GCN parity with PyG (when torch_geometric is installed)."""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments.graph_attacks.configs import citeseer
from experiments.graph_attacks.configs import cora
from experiments.graph_attacks.configs import planetoid as planetoid_cfg
from experiments.graph_attacks.configs import pubmed
from graph_attacks import config as config_lib
from graph_attacks import defences
from graph_attacks import graph as graph_lib
from graph_attacks import models
from graph_attacks import train
from graph_attacks.pipeline import summary
from tests import tolerances

PLANETOID_DIR = os.environ.get(
  'PLANETOID_DIR',
  os.path.join(
    os.path.dirname(__file__), '..', '..', '..', 'shared', 'data', 'planetoid'
  ),
)


class BitMaskTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_drop_rate_is_exact_in_expectation(self):
    shape = (300, 257)  # not a multiple of 32 elements per word
    for rate in (0.5, 0.25, 0.375):
      keep = self.variant(lambda k, r=rate: models.bit_mask_keep(k, shape, r))(
        jax.random.key(0)
      )
      chex.assert_shape(keep, shape)
      # 77,100 Bernoulli draws: std of the drop fraction <= 0.0018; 5 sd.
      np.testing.assert_allclose(1.0 - float(keep.mean()), rate, atol=0.009)

  def test_dropout_scales_kept_entries_and_rejects_other_rates(self):
    x = jnp.ones((64, 64))
    out = models.dropout(x, 0.25, jax.random.key(1))
    kept = np.asarray(out)[np.asarray(out) > 0]
    np.testing.assert_allclose(kept, 1.0 / 0.75, rtol=tolerances.ROUNDING)
    # A rate that is no multiple of 1/256 takes the Bernoulli path.
    out = models.dropout(x, 0.3, jax.random.key(1))
    vals = np.unique(np.asarray(out))
    assert vals.size == 2 and vals[0] == 0.0
    np.testing.assert_allclose(vals[1], 1.0 / 0.7, rtol=tolerances.ROUNDING)
    with pytest.raises(ValueError, match='not a multiple of 1/256'):
      models.bit_mask_keep(jax.random.key(0), (4,), 0.3)
    # Different keys, different masks; the mask is a pure function of it.
    a = models.bit_mask_keep(jax.random.key(2), (1000,), 0.5)
    b = models.bit_mask_keep(jax.random.key(3), (1000,), 0.5)
    assert not np.array_equal(a, b)
    chex.assert_trees_all_equal(
      a, models.bit_mask_keep(jax.random.key(2), (1000,), 0.5)
    )


def test_half_octave_buckets():
  assert [
    graph_lib.half_octave_bucket(x, 256) for x in (1, 256, 257, 385, 1201)
  ] == [256, 256, 384, 512, 1536]
  g = graph_lib.make_graph(np.ones((300, 2)), [0, 1], [1, 0])
  p = graph_lib.pad_to_bucket(g)
  assert p.nodes.shape == (384, 2) and p.senders.shape == (1024,)


def test_od_autoencoder_width_is_capped():
  ae = defences.AutoEncoder(3000, rngs=nnx.Rngs(0), max_hidden=64)
  widths = [layer.out_features for layer in ae.layers]
  assert widths == [64, 32, 64, 3000]
  small = defences.AutoEncoder(30, rngs=nnx.Rngs(0), max_hidden=64)
  assert [layer.out_features for layer in small.layers] == [20, 10, 20, 30]


def test_planetoid_configs_per_dataset():
  for mod, name in ((cora, 'cora'), (citeseer, 'citeseer'), (pubmed, 'pubmed')):
    c = mod.get_config()
    c.data.data_dir = '/some/planetoid'
    config_lib.validate_config(c)
    assert c.name == name and c.data.name == name
    assert len(c.seeds) >= 3
  assert citeseer.get_config().victim.grace.tau == 0.9
  assert pubmed.get_config().defence.prune_threshold == 0.2
  assert pubmed.get_config().attack.num_poison == 160
  with pytest.raises(ValueError, match="unknown Planetoid dataset 'ogb'"):
    planetoid_cfg.get_config('ogb')


def test_paper_numbers_follow_the_dataset():
  c = citeseer.get_config()
  name, table = summary.paper_dataset(c)
  assert name == 'citeseer' and table == {}
  name, table = summary.paper_dataset(pubmed.get_config())
  assert table['cpgba']['GSL'] == (0.96, 0.84)
  # The embedded CSBM graph stands in for Cora.
  from experiments.graph_attacks.configs import tiny

  assert summary.paper_dataset(tiny.get_config())[0] == 'cora'


def test_gcn_forward_and_gradient_equal_pyg():
  """Same weights and graph: logits, loss and gradients equal PyG's GCN."""
  torch = pytest.importorskip('torch')
  pyg = pytest.importorskip('torch_geometric.nn')
  rng = np.random.RandomState(0)
  n, f, c = 30, 6, 3
  s, r = graph_lib.undirected_edges(
    rng.randint(n, size=60), rng.randint(n, size=60), n
  )
  g = graph_lib.make_graph(rng.rand(n, f), s, r)
  labels = rng.randint(c, size=n)
  mask = (rng.rand(n) < 0.5).astype(np.float32)
  model = models.build_model('gcn', f, 8, c, seed=0, dropout_rate=0.0)
  convs = [pyg.GCNConv(f, 8), pyg.GCNConv(8, c)]
  with torch.no_grad():
    for conv, layer in zip(convs, model.layers, strict=True):
      conv.lin.weight.copy_(torch.tensor(np.asarray(layer.kernel[...]).T))
  x = torch.tensor(np.asarray(g.nodes))
  ei = torch.tensor(np.stack([g.senders, g.receivers]), dtype=torch.long)
  logits_t = convs[1](torch.relu(convs[0](x, ei)), ei)
  sel = torch.tensor(mask > 0)
  loss_t = torch.nn.functional.cross_entropy(
    logits_t[sel], torch.tensor(labels)[sel]
  )
  loss_t.backward()
  graphdef, state = nnx.split(model)
  gj = jax.tree.map(jnp.asarray, g)

  def loss_fn(st):
    logits = nnx.merge(graphdef, st)(gj)
    return train.masked_cross_entropy(logits, jnp.asarray(labels), mask), logits

  (loss_j, logits_j), grads = jax.value_and_grad(loss_fn, has_aux=True)(state)
  tol = tolerances.REDUCTION
  np.testing.assert_allclose(
    logits_j, logits_t.detach().numpy(), rtol=tol, atol=tol
  )
  np.testing.assert_allclose(float(loss_j), loss_t.item(), rtol=tol)
  for i, conv in enumerate(convs):
    scale = max(1.0, float(conv.lin.weight.grad.abs().max()))
    np.testing.assert_allclose(
      np.asarray(grads['layers'][i]['kernel'][...]).T,
      conv.lin.weight.grad.numpy(),
      rtol=tol,
      atol=tol * scale,
    )
    np.testing.assert_allclose(
      np.asarray(grads['biases'][i][...]),
      conv.bias.grad.numpy(),
      rtol=tol,
      atol=tol * scale,
    )
