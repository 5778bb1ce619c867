"""Threshold rules and streaming covariance accumulation."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest

import nspo


def test_relative_rule_hand_case():
  lam = np.array([0.0, 1e-6, 1e-3, 0.5, 2.0])
  # alpha * max = 1e-3 * 2 = 2e-3: 0, 1e-6 and 1e-3 are below it.
  np.testing.assert_array_equal(
    nspo.relative(1e-3).keep_mask(lam), [False, False, False, True, True]
  )


def test_absolute_rule_hand_case():
  lam = np.array([-1e-9, 0.01, 0.02, 3.0])
  np.testing.assert_array_equal(
    nspo.absolute(0.02).keep_mask(lam), [False, False, True, True]
  )


def test_energy_rule_hand_case():
  lam = np.array([1.0, 2.0, 3.0, 4.0])  # total 10; top-down 0.4, 0.7, 0.9, 1
  np.testing.assert_array_equal(
    nspo.energy(0.7).keep_mask(lam), [False, False, True, True]
  )
  np.testing.assert_array_equal(
    nspo.energy(0.71).keep_mask(lam), [False, True, True, True]
  )
  assert nspo.energy(1.0).keep_mask(lam).all()


def test_min_ratio_rule_hand_case():
  lam = np.array([1.0, 5.0, 10.0, 11.0, 100.0])
  # null where lam <= 10 * 1.
  np.testing.assert_array_equal(
    nspo.min_ratio(10.0).keep_mask(lam), [False, False, False, True, True]
  )


@pytest.mark.parametrize(
  'rule,value',
  [
    ('relative', 0.0),
    ('relative', 2.0),
    ('absolute', -1.0),
    ('energy', 1.5),
    ('min_ratio', 0.5),
    ('relative', float('nan')),
  ],
)
def test_bad_rule_values_raise(rule, value):
  with pytest.raises(ValueError, match=rule):
    nspo.Threshold(rule, value)


def test_unknown_rule_raises():
  with pytest.raises(ValueError, match='unknown threshold rule'):
    nspo.Threshold('spectral', 0.1)


def _captures(rng, num_layers, b, t, d):
  return rng.normal(size=(num_layers, b, t, d)).astype(np.float32)


def test_accumulate_errors_name_the_site():
  stats = nspo.init_stats({'mlp_in': (2, 4)})
  with pytest.raises(KeyError, match='mlp_in'):
    nspo.accumulate(stats, {'attn_in': jnp.zeros((2, 1, 1, 4))})
  with pytest.raises(ValueError, match="site 'mlp_in'"):
    nspo.accumulate(stats, {'mlp_in': jnp.zeros((3, 1, 1, 4))})
  with pytest.raises(ValueError, match='mask shape'):
    nspo.accumulate(
      stats, {'mlp_in': jnp.zeros((2, 1, 2, 4))}, jnp.ones((1, 3))
    )
  with pytest.raises(ValueError, match='num_layers'):
    nspo.init_stats({'mlp_in': (0, 4)})


def test_non_finite_and_empty_statistics_raise_naming_layer():
  x = np.ones((2, 1, 2, 3), np.float32)
  x[1, 0, 0, 0] = np.inf
  stats = nspo.accumulate(nspo.init_stats({'mlp_in': (2, 3)}), {'mlp_in': x})
  with pytest.raises(ValueError, match="site 'mlp_in', layer 1: .*non-finite"):
    nspo.second_moments(stats)
  with pytest.raises(ValueError, match='no tokens'):
    nspo.second_moments(nspo.init_stats({'mlp_in': (1, 3)}))


class CovarianceVariantsTest(chex.TestCase):
  """Streaming statistics under jit and without."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_accumulate_matches_numpy_with_mask_and_streams(self):
    rng = np.random.default_rng(0)
    x1, x2 = _captures(rng, 2, 3, 5, 4), _captures(rng, 2, 3, 5, 4)
    m1 = (rng.random((3, 5)) > 0.3).astype(np.float32)
    m2 = np.ones((3, 5), np.float32)
    stats = nspo.init_stats({'mlp_in': (2, 4)})
    step = self.variant(nspo.accumulate)
    stats = step(stats, {'mlp_in': x1, 'other': x1[..., :2]}, m1)
    stats = step(stats, {'mlp_in': x2}, m2)
    for layer in range(2):
      a = x1[layer].reshape(-1, 4)[m1.reshape(-1) > 0]
      b = x2[layer].reshape(-1, 4)
      k = np.concatenate([a, b])
      np.testing.assert_allclose(
        stats.sums['mlp_in'][layer], k.T @ k, rtol=1e-5, atol=1e-5
      )
    assert float(stats.counts['mlp_in']) == m1.sum() + 15
    moments = nspo.second_moments(stats)
    np.testing.assert_allclose(
      moments['mlp_in'],
      np.asarray(stats.sums['mlp_in']) / (m1.sum() + 15),
      rtol=1e-6,
    )

  @chex.variants(with_jit=True, without_jit=True)
  def test_merge_adds(self):
    rng = np.random.default_rng(1)
    x = _captures(rng, 1, 2, 3, 2)
    s = self.variant(nspo.accumulate)(nspo.init_stats({'a': (1, 2)}), {'a': x})
    both = self.variant(nspo.merge)(s, s)
    chex.assert_trees_all_equal_shapes_and_dtypes(both, s)
    np.testing.assert_allclose(both.sums['a'], 2 * s.sums['a'])
    assert float(both.counts['a']) == 12
    with pytest.raises(ValueError, match='different sites'):
      nspo.merge(s, nspo.init_stats({'b': (1, 2)}))

  @chex.variants(with_jit=True, without_jit=True)
  def test_shape_contracts_raise_chex_errors_naming_the_site(self):
    step = self.variant(nspo.accumulate)
    stats = nspo.init_stats({'mlp_in': (2, 4)})
    with self.assertRaisesRegex(AssertionError, r"\[Chex\].*site 'mlp_in'"):
      step(stats, {'mlp_in': jnp.zeros((2, 3, 4))})  # no B axis
    with self.assertRaisesRegex(AssertionError, r'mask shape \(3,\)'):
      step(stats, {'mlp_in': jnp.zeros((2, 1, 3, 4))}, jnp.ones(3))
