"""cku.mask as an optax transformation, and the unlearning losses."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import cku

L, D, F = 3, 4, 6


def _params(seed=0):
  rng = np.random.default_rng(seed)
  f32 = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
  return {
    'embed': {'embedding': f32(5, D)},
    'layers': {
      str(i): {
        'mlp': {
          'gate_proj': {'kernel': f32(D, F)},
          'up_proj': {'kernel': f32(D, F)},
          'down_proj': {'kernel': f32(F, D)},
        },
        'attn': {'q_proj': {'kernel': f32(D, D)}},
      }
      for i in range(L)
    },
  }


def _locked():
  return {
    1: np.array([True, False, True, False, False, True]),
    2: np.array([False] * 5 + [True]),
  }


def _train(tx, params, steps=4):
  state = tx.init(params)

  @jax.jit
  def step(p, s, key):
    g = jax.tree.map(lambda x: jax.random.normal(key, x.shape, x.dtype), p)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  for i in range(steps):
    params, state = step(params, state, jax.random.key(i))
  return params


def test_locked_slices_bit_identical_after_adamw_with_decay():
  p0 = _params()
  tx = optax.chain(optax.adamw(1e-1, weight_decay=0.5), cku.mask(_locked()))
  p1 = _train(tx, p0)
  for layer, m in _locked().items():
    mlp0 = p0['layers'][str(layer)]['mlp']
    mlp1 = p1['layers'][str(layer)]['mlp']
    for name in ('gate_proj', 'up_proj'):
      a, b = np.asarray(mlp0[name]['kernel']), np.asarray(mlp1[name]['kernel'])
      chex.assert_trees_all_equal(a[:, m], b[:, m])  # locked: bit-identical
      assert np.all(a[:, ~m] != b[:, ~m])
    a, b = (
      np.asarray(mlp0['down_proj']['kernel']),
      np.asarray(mlp1['down_proj']['kernel']),
    )
    chex.assert_trees_all_equal(a[m], b[m])
    assert np.all(a[~m] != b[~m])
  # Layer 0 (no mask) and non-MLP leaves train normally.
  for path in [('0', 'mlp', 'gate_proj'), ('1', 'attn', 'q_proj')]:
    a = p0['layers'][path[0]][path[1]][path[2]]['kernel']
    b = p1['layers'][path[0]][path[1]][path[2]]['kernel']
    assert np.all(np.asarray(a) != np.asarray(b))


def test_train_only_selected_freezes_everything_else():
  p0 = _params()
  tx = optax.chain(
    optax.adamw(1e-1), cku.mask(_locked(), train_only_selected=True)
  )
  p1 = _train(tx, p0, steps=2)
  np.testing.assert_array_equal(
    p0['embed']['embedding'], p1['embed']['embedding']
  )
  np.testing.assert_array_equal(
    p0['layers']['0']['mlp']['gate_proj']['kernel'],
    p1['layers']['0']['mlp']['gate_proj']['kernel'],
  )
  a = np.asarray(p0['layers']['2']['mlp']['up_proj']['kernel'])
  b = np.asarray(p1['layers']['2']['mlp']['up_proj']['kernel'])
  assert np.all(a[:, :5] != b[:, :5])


def test_mask_sharded_on_8_devices():
  params = {
    'layers': {
      '0': {
        'mlp': {
          'gate_proj': {'kernel': jnp.ones((4, 16))},
          'up_proj': {'kernel': jnp.ones((4, 16))},
          'down_proj': {'kernel': jnp.ones((16, 8))},
        }
      }
    }
  }
  locked = {0: np.arange(16) % 3 == 0}
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('model',))
  spec = jax.sharding.PartitionSpec(None, 'model')
  sharded = jax.tree.map(
    lambda x: jax.device_put(x, jax.sharding.NamedSharding(mesh, spec)), params
  )
  tx = cku.mask(locked)
  u, _ = jax.jit(tx.update)(sharded, tx.init(sharded))
  ref, _ = tx.update(params, tx.init(params))
  jax.tree.map(np.testing.assert_array_equal, u, ref)
  np.testing.assert_array_equal(
    u['layers']['0']['mlp']['up_proj']['kernel'][0], np.where(locked[0], 0, 1)
  )


def test_mask_errors():
  params = _params()
  with pytest.raises(ValueError, match='empty'):
    cku.mask({})
  with pytest.raises(ValueError, match='1-D bool'):
    cku.mask({0: np.ones(F)})
  with pytest.raises(ValueError, match='different widths'):
    cku.mask({0: np.ones(F, bool), 1: np.ones(F + 1, bool)})
  with pytest.raises(ValueError, match='mask\\s+of layer 1 has 7'):
    cku.mask({1: np.ones(F + 1, bool)}).init(params)
  with pytest.raises(ValueError, match=r'layers \[7\]'):
    cku.mask({7: np.ones(F, bool)}).init(params)
  with pytest.raises(ValueError, match='layer'):
    cku.mask({0: np.ones(F, bool)}, targets={'mlp/gate_proj/kernel': -1}).init(
      params
    )


def test_unlearning_loss_combines_terms():
  f = jnp.log(jnp.array([[0.5, 0.5]]))
  fm = jnp.ones((1, 2))
  r = jnp.log(jnp.array([[0.25]]))
  rm = jnp.ones((1, 1))
  loss, m = jax.jit(cku.unlearning_loss, static_argnames='method')(
    f, fm, r, rm, retain_weight=2.0
  )
  np.testing.assert_allclose(loss, np.log(0.5) + 2 * -np.log(0.25), 1e-6)
  np.testing.assert_allclose(m['forget_nll'], -np.log(0.5), 1e-6)
  loss_npo, _ = cku.unlearning_loss(
    f, fm, r, rm, method='npo', ref_forget_logp=f, beta=1.0
  )
  np.testing.assert_allclose(loss_npo, 2 * np.log(2) + -np.log(0.25), rtol=1e-6)
  with pytest.raises(ValueError, match='needs ref_forget_logp'):
    cku.unlearning_loss(f, fm, r, rm, method='npo')
  with pytest.raises(ValueError, match='unknown unlearning method'):
    cku.unlearning_loss(f, fm, r, rm, method='rmu')
  with pytest.raises(ValueError, match=r'must both be\s+\[B, T\]'):
    cku.nll(jnp.ones((2,)), jnp.ones((2,)))


def test_nan_and_inf_in_padding_do_not_leak():
  # Padded positions hold -inf (log-prob of an impossible pad token) or NaN;
  # the losses and their gradients see only the valid tokens.
  logp = jnp.array([[-1.0, -2.0, -jnp.inf], [-0.5, jnp.nan, jnp.nan]])
  ref = jnp.array([[-1.5, -1.0, jnp.nan], [-1.0, -jnp.inf, jnp.nan]])
  mask = jnp.array([[1, 1, 0], [1, 0, 0]], jnp.float32)
  clean = jnp.where(mask > 0, logp, 0.0)
  clean_ref = jnp.where(mask > 0, ref, 0.0)
  # Hand values: NLL = (1 + 2 + 0.5) / 3; sequence log-ratios (-3) - (-2.5)
  # and (-0.5) - (-1).
  np.testing.assert_allclose(cku.nll(logp, mask), 3.5 / 3, rtol=1e-6)
  beta = 0.5
  ratio = np.array([-0.5, 0.5])
  want_npo = -(2 / beta) * np.mean(np.log(1 / (1 + np.exp(beta * ratio))))
  np.testing.assert_allclose(
    cku.npo_loss(logp, ref, mask, beta), want_npo, rtol=1e-6
  )
  for name, fn in [
    ('nll', lambda x: cku.nll(x, mask)),
    ('ga', lambda x: cku.gradient_ascent_loss(x, mask)),
    ('npo', lambda x: cku.npo_loss(x, ref, mask, beta)),
    (
      'unlearning',
      lambda x: cku.unlearning_loss(
        x, mask, x, mask, 'npo', 1.0, ref_forget_logp=ref, beta=beta
      )[0],
    ),
  ]:
    value, grad = jax.value_and_grad(fn)(logp)
    assert np.isfinite(value), name
    assert np.all(np.isfinite(grad)), name
    np.testing.assert_array_equal(np.asarray(grad)[mask == 0], 0.0)
    clean_fn = {
      'npo': lambda x: cku.npo_loss(x, clean_ref, mask, beta),
      'unlearning': lambda x: cku.unlearning_loss(
        x, mask, x, mask, 'npo', 1.0, ref_forget_logp=clean_ref, beta=beta
      )[0],
    }.get(name, fn)
    np.testing.assert_allclose(value, clean_fn(clean), rtol=1e-6)
  logits = jnp.zeros((1, 2, 3)).at[0, 1].set(jnp.nan)
  kl = cku.kl_from_logits(logits, jnp.zeros((1, 2, 3)), jnp.array([[1, 0]]))
  np.testing.assert_allclose(kl, 0.0, atol=1e-7)


class CKUVariantsTest(chex.TestCase):
  """The mask and the losses under jit and without (and pmap where vmapped)."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_nan_in_locked_gradient_is_zeroed_and_biases_masked(self):
    params = {
      'layers': {
        '0': {
          'mlp': {
            'gate_proj': {'kernel': jnp.ones((D, F)), 'bias': jnp.ones((F,))},
            'down_proj': {'kernel': jnp.ones((F, D))},
          }
        }
      }
    }
    locked = {0: np.array([True] + [False] * (F - 1))}
    tx = cku.mask(locked)
    g = jax.tree.map(lambda x: x.at[0].set(jnp.nan), params)
    g['layers']['0']['mlp']['gate_proj']['kernel'] = (
      jnp.ones((D, F)).at[:, 0].set(jnp.nan)
    )
    u, _ = self.variant(tx.update)(g, tx.init(params))
    mlp = u['layers']['0']['mlp']
    np.testing.assert_array_equal(mlp['gate_proj']['kernel'][:, 0], 0.0)
    np.testing.assert_array_equal(mlp['gate_proj']['bias'][0], 0.0)
    np.testing.assert_array_equal(mlp['down_proj']['kernel'][0], 0.0)
    chex.assert_tree_all_finite(mlp['gate_proj']['kernel'])
    # Unlocked slices pass through bit for bit.
    g_gate = g['layers']['0']['mlp']['gate_proj']['kernel']
    chex.assert_trees_all_equal(
      mlp['gate_proj']['kernel'][:, 1:], g_gate[:, 1:]
    )

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_gradient_ascent_and_nll_hand_case(self):
    logp = jnp.log(jnp.array([[0.5, 0.25, 0.9]]))
    mask = jnp.array([[1.0, 1.0, 0.0]])
    want = -(np.log(0.5) + np.log(0.25)) / 2
    nll = self.variant(cku.nll)
    np.testing.assert_allclose(nll(logp, mask), want, rtol=1e-6)
    np.testing.assert_allclose(
      self.variant(cku.gradient_ascent_loss)(logp, mask), -want, rtol=1e-6
    )

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_npo_hand_case_and_gradient_sign(self):
    logp = jnp.array([[-1.0, -2.0], [-0.5, -0.5]])
    ref = jnp.array([[-1.5, -1.5], [-1.0, -2.0]])
    mask = jnp.array([[1.0, 1.0], [1.0, 0.0]])
    beta = 0.5
    # sequence ratios: (-3) - (-3) = 0 and (-0.5) - (-1) = 0.5
    r = np.array([0.0, 0.5])
    want = (2 / beta) * np.mean(np.log1p(np.exp(beta * r)))
    npo = self.variant(lambda *a: cku.npo_loss(*a, beta))
    np.testing.assert_allclose(npo(logp, ref, mask), want, 1e-6)
    g = self.variant(jax.grad(lambda x: cku.npo_loss(x, ref, mask, beta)))(logp)
    assert np.all(np.asarray(g)[mask > 0] > 0)  # pushes forget log-probs down
    np.testing.assert_array_equal(np.asarray(g)[mask == 0], 0.0)
    # NPO's gradient is bounded by GA's and vanishes as the ratio drops.
    far = jax.grad(lambda x: cku.npo_loss(x, ref, mask, beta))(logp - 50.0)
    assert float(jnp.max(jnp.abs(far))) < 1e-8
    with pytest.raises(ValueError, match='beta'):
      cku.npo_loss(logp, ref, mask, 0.0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_kl_from_logits_hand_case(self):
    logits = jnp.log(jnp.array([[[0.5, 0.5]]]))
    ref = jnp.log(jnp.array([[[0.25, 0.75]]]))
    want = 0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)
    kl = self.variant(cku.kl_from_logits)
    np.testing.assert_allclose(
      kl(logits, ref, jnp.ones((1, 1))), want, rtol=1e-6
    )
    with pytest.raises(ValueError, match='disagree'):
      kl(logits, ref, jnp.ones((1, 2)))


class CKUShapeContractTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_t_input_and_mismatched_mask_raise_chex_errors(self):
    nll = self.variant(cku.nll)
    with self.assertRaisesRegex(AssertionError, r'\[Chex\].*nll: log-probs'):
      nll(jnp.zeros(3), jnp.ones(3))
    with self.assertRaisesRegex(AssertionError, r'assert_equal_shape.*\[B, T'):
      nll(jnp.zeros((2, 3)), jnp.ones((2, 4)))
    kl = self.variant(cku.kl_from_logits)
    with self.assertRaisesRegex(AssertionError, 'kl_from_logits: logits'):
      kl(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.ones((2, 3)))
