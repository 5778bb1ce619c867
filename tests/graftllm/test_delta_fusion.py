"""Delta extraction (trees, HF directories), routing, continual learning,
the merging baselines and the implicit router."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common import models
from graftllm import compress
from graftllm import delta as delta_lib
from graftllm import fusion
from graftllm import merging
from graftllm import router
from graftllm import skillpack
from tests import tolerances


def _model(seed, **over):
  cfg = models.get_preset(
    'tiny',
    **{'vocab_size': 50, 'd_model': 16, 'n_layers': 1, 'd_ff': 32, **over},
  )
  return cfg, models.Transformer(cfg, rngs=nnx.Rngs(seed))


def _perturbed(params, seed, scale=0.05):
  leaves, tree = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree_util.tree_unflatten(
    tree,
    [
      x + scale * jax.random.normal(k, x.shape)
      for x, k in zip(leaves, keys, strict=True)
    ],
  )


def test_extract_delta_and_add_back():
  _, m = _model(0)
  g, base = models.split(m)
  tuned = _perturbed(base, 1)
  d = delta_lib.extract_delta(base, tuned)
  assert 'layers/0/mlp/up_proj/kernel' in d
  back = delta_lib.add_delta(base, d)
  tolerances.assert_trees_close(back, tuned, tolerances.ROUNDING)


def test_mismatch_names_the_tensor():
  _, a = _model(0)
  _, b = _model(0, d_ff=48)
  _, pa = models.split(a)
  _, pb = models.split(b)
  want = r"'layers/0/mlp/down_proj/kernel' has shape \(32, 16\)"
  with pytest.raises(delta_lib.ArchitectureMismatch, match=want):
    delta_lib.extract_delta(pa, pb)
  _, c = _model(0, n_layers=2)
  _, pc = models.split(c)
  with pytest.raises(
    delta_lib.ArchitectureMismatch, match="'layers/1/.*tuned model only"
  ):
    delta_lib.extract_delta(pa, pc)


def test_extract_from_hf_directories(tmp_path):
  cfg, a = _model(0)
  _, pa = models.split(a)
  tuned = _perturbed(pa, 2)
  b = models.merge(models.split(a)[0], tuned)
  models.save_hf(a, cfg, tmp_path / 'base')
  models.save_hf(b, cfg, tmp_path / 'tuned')
  _, d = delta_lib.extract_delta_hf(
    str(tmp_path / 'base'), str(tmp_path / 'tuned')
  )
  want = delta_lib.extract_delta(pa, tuned)
  assert set(d) == set(want)
  for k in want:
    tolerances.assert_close(d[k], want[k], tolerances.ROUNDING)
  cfg2, c = _model(0, d_ff=48)
  models.save_hf(c, cfg2, tmp_path / 'other')
  with pytest.raises(
    delta_lib.ArchitectureMismatch, match="config field 'd_ff'"
  ):
    delta_lib.extract_delta_hf(str(tmp_path / 'base'), str(tmp_path / 'other'))


def _packs(base):
  cfg = compress.CompressionConfig(group_size=8, mlp_beta=0.99, attn_beta=0.99)
  out = {}
  for i, name in enumerate(('a', 'b')):
    d = delta_lib.extract_delta(base, _perturbed(base, 10 + i))
    out[name] = skillpack.SkillPack(name, compress.compress(d, cfg))
  return out


def test_continual_learning_is_bit_identical_and_removal_removes():
  _, m = _model(0)
  g, base = models.split(m)
  packs = _packs(base)
  apply = jax.jit(models.apply_fn(g))
  tokens = jnp.arange(12).reshape(2, 6) % 50
  mask = jnp.ones_like(tokens, bool)
  lib = fusion.SkillLibrary(base)
  lib.add(packs['a'])
  pa = lib.params_for({'a': 1.0})
  out_a = np.asarray(apply(pa, tokens, mask))
  lib.add(packs['b'])
  pa2 = lib.params_for({'a': 1.0})
  # Adding pack B leaves A's parameters and outputs bit-identical.
  chex.assert_trees_all_equal(pa, pa2)
  chex.assert_trees_all_equal(np.asarray(apply(pa2, tokens, mask)), out_a)
  # The pack changed the model, and B's routing differs from A's.
  assert not np.array_equal(out_a, apply(base, tokens, mask))
  assert not np.array_equal(
    out_a, apply(lib.params_for({'b': 1.0}), tokens, mask)
  )
  lib.remove('a')
  with pytest.raises(KeyError, match="no pack named 'a'.*\\('b',\\)"):
    lib.params_for({'a': 1.0})
  chex.assert_trees_all_equal(lib.params_for({}), base)
  with pytest.raises(ValueError, match='already in the library'):
    lib.add(packs['b'])
  r = fusion.ExplicitRouter({'math': 'b'})
  assert r.weights('math') == {'b': 1.0}
  with pytest.raises(KeyError, match="task 'code'"):
    r.weights('code')


def test_on_the_fly_factors_equal_the_merged_kernel():
  _, m = _model(0)
  _, base = models.split(m)
  packs = _packs(base)
  lib = fusion.SkillLibrary(base)
  lib.add(packs['a'])
  path = 'layers/0/mlp/up_proj/kernel'
  v, s, u = lib.factors_for('a', path)
  k = delta_lib.flatten(base)[path]
  merged = delta_lib.flatten(lib.params_for({'a': 1.0}))[path]
  x = np.random.default_rng(0).normal(size=(5, k.shape[0])).astype(np.float32)
  got = fusion.lowrank_apply(x, k, v, s, u)
  tolerances.assert_close(got, x @ merged, tolerances.FEW_OPS)


def test_task_arithmetic_ties_dare_hand_cases():
  d1 = {'w': np.array([1.0, -2.0, 0.5, 0.0])}
  d2 = {'w': np.array([3.0, 1.0, -0.5, 0.0])}
  np.testing.assert_allclose(merging.task_arithmetic([d1, d2], 0.5)['w'],
                             [2.0, -0.5, 0.0, 0.0])  # fmt: skip
  # density 1: no trimming; signs: +, - (|-2| > 1), 0 -> +? (sum 0: sign 0).
  t = merging.ties([d1, d2], density=1.0)['w']
  np.testing.assert_allclose(t, [2.0, -2.0, 0.0, 0.0])
  # density 0.5 keeps the 2 largest of each: d1 -> [1, -2, 0, 0],
  # d2 -> [3, 1, 0, 0]; signs +, - ; disjoint means 2, -2.
  t = merging.ties([d1, d2], density=0.5)['w']
  np.testing.assert_allclose(t, [2.0, -2.0, 0.0, 0.0])
  np.testing.assert_allclose(
    merging.dare([d1, d2], p=0.0)['w'], merging.task_arithmetic([d1, d2])['w']
  )
  big = {'w': np.ones(20000, np.float32)}
  dd = merging.dare([big], p=0.5, seed=0)['w']
  assert set(np.unique(dd)) <= {0.0, 2.0}
  assert abs(dd.mean() - 1.0) < 0.05  # unbiased: 4 sigma of 0.007
  with pytest.raises(ValueError, match=r'p=1.0'):
    merging.dare([d1], p=1.0)
  with pytest.raises(ValueError, match="tensor 'v'"):
    merging.task_arithmetic([d1, {'v': d1['w']}])


def test_router_learns_to_separate_two_prompt_kinds():
  emb = np.zeros((10, 4), np.float32)
  emb[:5, 0] = 1.0
  emb[5:, 1] = 1.0
  rng = np.random.default_rng(0)
  tokens = np.concatenate(
    [rng.integers(0, 5, (16, 6)), rng.integers(5, 10, (16, 6))]
  )
  mask = np.ones_like(tokens)
  mask[:, :2] = 0  # left padding ignored
  feats = router.pooled_embeddings(emb, tokens, mask)
  tolerances.assert_close(feats[0], [1, 0, 0, 0], tolerances.ROUNDING)
  labels = np.repeat([0, 1], 16)
  params = router.init_router(jax.random.key(0), 4, 8, 2)
  grad = jax.jit(
    jax.grad(
      lambda p: router.router_loss(p, {'feats': feats, 'labels': labels})[0]
    )
  )
  for _ in range(200):
    g = grad(params)
    params = jax.tree_util.tree_map(lambda p, d: p - 0.5 * d, params, g)
  np.testing.assert_array_equal(router.top1(params, feats), labels)
  w = router.route(params, feats)
  tolerances.assert_close(w.sum(-1), np.ones(32), tolerances.ROUNDING)


def test_lora_budget_and_zero_start():
  from graftllm import lora

  _, m = _model(0)
  _, base = models.split(m)
  # 1 layer: q 16x16, k/v 16x8, o 16x16, gate/up 16x32, down 32x16.
  per_rank = 2 * (32 + 24 + 24 + 32 + 48 + 48 + 48)
  assert lora.adapter_bytes(base, 1) == per_rank
  assert lora.rank_for_bytes(base, 3 * per_rank + 5) == 3
  ad = lora.init_lora(jax.random.key(0), base, 3)
  same = lora.apply_lora(base, ad, alpha=6.0)
  chex.assert_trees_all_equal(same, base)  # zero-initialised B: no change
  with pytest.raises(ValueError, match='exceeds min'):
    lora.init_lora(jax.random.key(0), base, 9)


class RouterVariantsTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_route_and_top1_hand_case(self):
    # Identity first layer, ReLU, then a 2-pack head: logits [x0, x1] for
    # x >= 0, so softmax([2, 0]) and softmax([0, 1]).
    params = {
      'w1': jnp.eye(2),
      'b1': jnp.zeros(2),
      'w2': jnp.eye(2),
      'b2': jnp.zeros(2),
    }
    feats = jnp.array([[2.0, 0.0], [0.0, 1.0]])
    weights = self.variant(router.route)(params, feats)
    chex.assert_shape(weights, (2, 2))
    e2, e1 = math.exp(2.0), math.exp(1.0)
    want = [[e2 / (e2 + 1), 1 / (e2 + 1)], [1 / (1 + e1), e1 / (1 + e1)]]
    tolerances.assert_close(weights, want, tolerances.FEW_OPS)
    chosen = self.variant(router.top1)(params, feats)
    chex.assert_trees_all_equal(chosen, jnp.array([0, 1]))  # an argmax

  @chex.variants(with_jit=True, without_jit=True)
  def test_pooled_embeddings_hand_case(self):
    embedding = jnp.array([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
    tokens = jnp.array([[0, 1, 2], [2, 2, 0]])
    mask = jnp.array([[1, 1, 0], [1, 0, 0]])
    feats = self.variant(router.pooled_embeddings)(embedding, tokens, mask)
    # Row 0: mean of rows 0 and 1; row 1: row 2 alone (dyadic: exact).
    chex.assert_trees_all_equal(feats, jnp.array([[0.5, 1.0], [4.0, 4.0]]))
