"""nspo.project and nspo.reproject_every as optax transformations."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import nspo
from tests import tolerances as tol

L, D, F = 2, 8, 16


def _general_inputs(seed=0):
  """Protected inputs per site and layer: low-rank, so null spaces exist."""
  rng = np.random.default_rng(seed)
  return {
    'mlp_in': [
      rng.standard_normal((20, 3)) @ rng.standard_normal((3, D))
      for _ in range(L)
    ],
    'mlp_hidden': [
      rng.standard_normal((30, 6)) @ rng.standard_normal((6, F))
      for _ in range(L)
    ],
  }


def _spaces(k, rep='auto'):
  moments = {s: np.stack([x.T @ x for x in ks]) for s, ks in k.items()}
  return nspo.from_moments(moments, nspo.relative(1e-6), rep)


def _params(seed=0):
  rng = np.random.default_rng(seed)
  f32 = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
  layers = {
    str(i): {
      'mlp': {
        'gate_proj': {'kernel': f32(D, F)},
        'up_proj': {'kernel': f32(D, F)},
        'down_proj': {'kernel': f32(F, D)},
      },
      'input_norm': {'scale': f32(D)},
    }
    for i in range(L)
  }
  return {'embed': {'embedding': f32(5, D)}, 'layers': layers}


def _grads(params, seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda x: jnp.asarray(rng.standard_normal(x.shape), x.dtype), params
  )


def _site_inputs(k, path):
  layer = int(path[1])
  site = 'mlp_hidden' if path[3] == 'down_proj' else 'mlp_in'
  return k[site][layer]


def _kernel_paths():
  return [
    ('layers', str(i), 'mlp', name, 'kernel')
    for i in range(L)
    for name in ('gate_proj', 'up_proj', 'down_proj')
  ]


def _get(tree, path):
  for p in path:
    tree = tree[p]
  return tree


def _run(tx, params, steps):
  state = tx.init(params)

  @jax.jit
  def step(params, state, g):
    u, state = tx.update(g, state, params)
    return optax.apply_updates(params, u), state

  for s in range(steps):
    params, state = step(params, state, _grads(params, 100 + s))
  return params, state


@pytest.mark.parametrize('rep', ['dense', 'complement', 'null_basis'])
def test_post_adam_projection_keeps_general_outputs(rep):
  k = _general_inputs()
  p0 = _params()
  adamw = lambda: optax.adamw(1e-2, weight_decay=0.1)
  tx = optax.chain(adamw(), nspo.project(_spaces(k, rep)))
  p1, _ = _run(tx, p0, 6)
  plain, _ = _run(adamw(), p0, 6)
  for path in _kernel_paths():
    kx = _site_inputs(k, path)
    dw = np.asarray(_get(p1, path) - _get(p0, path), np.float64)
    assert np.linalg.norm(dw) > 1e-3  # it did move
    # |Δ(xW)| ~ 0 on the protected inputs.
    assert np.linalg.norm(kx @ dw) < 1e-4 * np.linalg.norm(kx) * np.linalg.norm(
      dw
    ), path
  # Untargeted leaves follow plain AdamW bit for bit.
  for path in [('embed', 'embedding'), ('layers', '1', 'input_norm', 'scale')]:
    chex.assert_trees_all_equal(_get(p1, path), _get(plain, path))


def test_pre_adam_projection_leaks_out_of_null_space():
  """The research note's ordering point: project after Adam, not before."""
  k = _general_inputs()
  p0 = _params()
  pre = optax.chain(nspo.project(_spaces(k)), optax.adam(1e-2))
  post = optax.chain(optax.adam(1e-2), nspo.project(_spaces(k)))
  path = ('layers', '0', 'mlp', 'gate_proj', 'kernel')
  kx = _site_inputs(k, path)

  def leak(tx):
    p1, _ = _run(tx, p0, 5)
    dw = np.asarray(_get(p1, path) - _get(p0, path), np.float64)
    return np.linalg.norm(kx @ dw) / (np.linalg.norm(kx) * np.linalg.norm(dw))

  assert leak(pre) > 1e-2
  assert leak(post) < 1e-5


class _Mlp(nnx.Module):
  def __init__(self, rngs):
    lin = lambda a, b: nnx.Linear(a, b, use_bias=False, rngs=rngs)
    self.gate_proj, self.up_proj, self.down_proj = (
      lin(D, F),
      lin(D, F),
      lin(F, D),
    )


class _Block(nnx.Module):
  def __init__(self, rngs):
    self.mlp = _Mlp(rngs)


class _Model(nnx.Module):
  def __init__(self, rngs):
    self.embed = nnx.Embed(5, D, rngs=rngs)
    self.layers = nnx.List([_Block(rngs) for _ in range(L)])


def test_nnx_state_paths_match_and_project():
  k = _general_inputs()
  _, params = nnx.split(_Model(nnx.Rngs(0)), nnx.Param)
  tx = optax.chain(optax.adam(1e-2), nspo.project(_spaces(k)))
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  u, _ = jax.jit(tx.update)(grads, state, params)
  du = np.asarray(u['layers'][1]['mlp']['down_proj']['kernel'][...])
  assert np.linalg.norm(du) > 0
  np.testing.assert_allclose(k['mlp_hidden'][1] @ du, 0, atol=1e-4)


def test_sharded_params_on_8_devices_match_single_device():
  assert jax.device_count() == 8
  k = _general_inputs()
  tx = optax.chain(optax.adamw(1e-2), nspo.project(_spaces(k)))
  params = _params()
  g = _grads(params, 11)
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('model',))
  shard = lambda x: jax.device_put(
    x,
    jax.sharding.NamedSharding(
      mesh,
      jax.sharding.PartitionSpec(None, 'model')
      if x.ndim == 2 and x.shape[1] % 8 == 0
      else jax.sharding.PartitionSpec(),
    ),
  )
  sp, sg = jax.tree.map(shard, params), jax.tree.map(shard, g)
  assert len(sp['layers']['0']['mlp']['gate_proj']['kernel'].devices()) == 8
  update = jax.jit(tx.update)
  u_sharded, _ = update(sg, tx.init(sp), sp)
  u_single, _ = update(g, tx.init(params), params)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
    u_sharded,
    u_single,
  )


def test_bad_targets_and_trees_raise_clear_errors():
  k = _general_inputs()
  spaces = _spaces(k)
  params = _params()
  with pytest.raises(ValueError, match=r"\['nope/kernel'\] match no parameter"):
    nspo.project(spaces, {'nope/kernel': 'mlp_in'}).init(params)
  with pytest.raises(ValueError, match="site 'attn_in', which has no null"):
    nspo.project(
      spaces, {r'layers/(?P<layer>\d+)/mlp/gate_proj/kernel': 'attn_in'}
    ).init(params)
  bad = jax.tree.map(lambda x: x, params)
  bad['layers']['1']['mlp']['gate_proj']['kernel'] = jnp.ones((D + 1, F))
  with pytest.raises(ValueError, match="'layers/1/mlp/gate_proj/kernel'"):
    nspo.project(spaces).init(bad)
  deep = jax.tree.map(lambda x: x, params)
  deep['layers']['2'] = params['layers']['0']
  with pytest.raises(ValueError, match='is layer 2'):
    nspo.project(spaces).init(deep)
  with pytest.raises(TypeError, match='not a projector'):
    nspo.project({'mlp_in': np.eye(D)})
  with pytest.raises(ValueError, match='no default target'):
    nspo.project({'foo': spaces['mlp_in']})
  with pytest.raises(ValueError, match='two target patterns'):
    nspo.project(spaces, {'gate_proj': 'mlp_in', 'kernel': 'mlp_in'}).init(
      params
    )


def test_reproject_every_projects_accumulated_drift():
  k = _general_inputs()
  spaces = _spaces(k, 'dense')
  p0 = _params()
  tx = optax.chain(optax.sgd(0.1), nspo.reproject_every(spaces, every=3))
  state = tx.init(p0)
  params = p0
  path = ('layers', '1', 'mlp', 'down_proj', 'kernel')
  kx = _site_inputs(k, path)
  step = jax.jit(lambda p, s, g: tx.update(g, s, p))
  for s in range(3):
    g = _grads(params, 50 + s)
    u, state = step(params, state, g)
    new = optax.apply_updates(params, u)
    if s < 2:  # plain SGD in between
      np.testing.assert_allclose(_get(u, path), -0.1 * _get(g, path), rtol=1e-6)
    else:  # W <- W_ref + P (W - W_ref) on step 3
      plain = _get(params, path) - 0.1 * _get(g, path)
      p = np.asarray(spaces['mlp_hidden'].matrix[1])
      want = _get(p0, path) + p @ (plain - _get(p0, path))
      np.testing.assert_allclose(_get(new, path), want, atol=1e-5)
      drift = np.asarray(_get(new, path) - _get(p0, path), np.float64)
      np.testing.assert_allclose(kx @ drift, 0, atol=1e-4)
    chex.assert_trees_all_equal(  # untargeted: plain SGD, bit for bit
      new['embed']['embedding'],
      params['embed']['embedding'] - 0.1 * g['embed']['embedding'],
    )
    params = new
  assert int(state[1].count) == 3
  with pytest.raises(ValueError, match='needs params'):
    nspo.reproject_every(spaces).update(p0, tx.init(p0)[1])
  with pytest.raises(ValueError, match='positive int'):
    nspo.reproject_every(spaces, every=0)


def test_opt_state_orbax_round_trip(tmp_path):
  k = _general_inputs()
  tx = optax.chain(optax.adamw(1e-2), nspo.project(_spaces(k)))
  params = _params()
  _, state = _run(tx, params, 1)
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(tmp_path / 'opt', state)
  with ocp.StandardCheckpointer() as ckpt:
    back = ckpt.restore(tmp_path / 'opt', tx.init(params))
  assert isinstance(back[1], nspo.ProjectionState)
  jax.tree.map(np.testing.assert_array_equal, back, state)


def test_reproject_every_rejects_mismatched_trees():
  spaces = _spaces(_general_inputs(), 'dense')
  p0 = _params()
  tx = nspo.reproject_every(spaces, every=1)
  state = tx.init(p0)
  fewer = jax.tree.map(lambda x: x, p0)
  del fewer['layers']['1']
  with pytest.raises(ValueError, match='different targeted leaves'):
    tx.update(p0, state, fewer)
  with pytest.raises(ValueError, match='different targeted leaves'):
    tx.update(fewer, state, fewer)


class TransformVariantsTest(chex.TestCase):
  """The transforms' updates under jit and without."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_idempotent_descent_and_untouched(self):
    k = _general_inputs()
    tx = nspo.project(_spaces(k))
    params = _params()
    state = tx.init(params)
    g = _grads(params, 7)
    update = self.variant(tx.update)
    once, _ = update(g, state)
    twice, _ = update(once, state)
    chex.assert_trees_all_equal_shapes_and_dtypes(once, g)
    # P (P u) = P u: projections of O(1) gradients, a few ops at scale 1.
    chex.assert_trees_all_close(once, twice, rtol=0.0, atol=tol.FEW_OPS)
    for path in _kernel_paths():
      gi, pg = _get(g, path), _get(once, path)
      inner = float(jnp.vdot(gi, pg))
      assert inner >= 0.0
      np.testing.assert_allclose(inner, float(jnp.vdot(pg, pg)), rtol=1e-4)
      assert float(jnp.linalg.norm(pg)) <= float(jnp.linalg.norm(gi)) + 1e-5
    # The untargeted leaves pass through bit for bit.
    chex.assert_trees_all_equal(once['embed'], g['embed'])
    chex.assert_trees_all_equal(
      once['layers']['0']['input_norm'], g['layers']['0']['input_norm']
    )

  @chex.variants(with_jit=True, without_jit=True)
  def test_stacked_kernels_without_layer_group(self):
    k = _general_inputs()
    rng = np.random.default_rng(3)
    stacked = {'mlp': {'gate': jnp.asarray(rng.standard_normal((L, D, F)))}}
    tx = nspo.project(_spaces(k), targets={r'mlp/gate$': 'mlp_in'})
    u, _ = self.variant(tx.update)(stacked, tx.init(stacked))
    for i in range(L):
      np.testing.assert_allclose(
        k['mlp_in'][i] @ np.asarray(u['mlp']['gate'][i]), 0, atol=1e-4
      )

  @chex.variants(with_jit=True, without_jit=True)
  def test_attention_kernels_with_head_axes(self):
    rng = np.random.default_rng(4)
    heads, hd = 2, 4
    k_in = rng.standard_normal((10, 3)) @ rng.standard_normal((3, D))
    k_out = rng.standard_normal((10, 5)) @ rng.standard_normal((5, heads * hd))
    spaces = nspo.from_moments(
      {'attn_in': (k_in.T @ k_in)[None], 'attn_out': (k_out.T @ k_out)[None]},
      nspo.relative(1e-6),
    )
    params = {
      'layers': {
        '0': {
          'attn': {
            'q_proj': {'kernel': jnp.ones((D, heads, hd))},
            'o_proj': {'kernel': jnp.ones((heads, hd, D))},
          }
        }
      }
    }
    tx = nspo.project(spaces)  # default: the attention targets of the sites
    u, _ = self.variant(tx.update)(params, tx.init(params))
    q = np.asarray(u['layers']['0']['attn']['q_proj']['kernel']).reshape(D, -1)
    o = np.asarray(u['layers']['0']['attn']['o_proj']['kernel']).reshape(-1, D)
    np.testing.assert_allclose(k_in @ q, 0, atol=1e-4)
    np.testing.assert_allclose(k_out @ o, 0, atol=1e-4)
