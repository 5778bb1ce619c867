"""Neuron scores and the choice of locked neurons."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cku


def test_scoring_errors():
  a = jnp.ones((2, 1, 1, 4))
  with pytest.raises(ValueError, match='unknown score method'):
    cku.token_scores(a, a, 'taylor')
  with pytest.raises(ValueError, match='needs gradients'):
    cku.token_scores(a, None, 'attribution')
  with pytest.raises(ValueError, match='differ'):
    cku.token_scores(a, jnp.ones((2, 1, 1, 5)))
  with pytest.raises(ValueError, match=r'expected \[3, B, T, 4\]'):
    cku.accumulate_scores(cku.init_scores(3, 4), a, a)
  with pytest.raises(ValueError, match='no tokens'):
    cku.mean_scores(cku.init_scores(1, 2))
  bad = cku.accumulate_scores(
    cku.init_scores(2, 4), a.at[1, 0, 0, 0].set(jnp.nan), a
  )
  with pytest.raises(ValueError, match='layer 1'):
    cku.mean_scores(bad)


def test_select_top_fraction_with_ties():
  scores = np.array(
    [[0.1, 0.9, 0.5, 0.5, 0.2], [5.0, 4.0, 3.0, 2.0, 1.0]], np.float64
  )
  # ceil(0.6 * 5) = 3 locked per layer; the 0.5 tie goes to the lower index.
  out = cku.select(scores, 0.6)
  np.testing.assert_array_equal(out[0], [False, True, True, True, False])
  np.testing.assert_array_equal(out[1], [True, True, True, False, False])
  only = cku.select(scores, 0.2, layers=[1])
  assert list(only) == [1]
  np.testing.assert_array_equal(only[1], [True, False, False, False, False])
  assert not cku.select(scores, 0.0)[0].any()
  # 0.8 of 5 is exactly 4, not 5 from floating point.
  assert cku.select(scores, 0.8)[0].sum() == 4


@pytest.mark.parametrize(
  'kwargs,match',
  [
    ({'lock_rate': 1.0}, 'lock_rate'),
    ({'lock_rate': -0.1}, 'lock_rate'),
    ({'lock_rate': 0.5, 'layers': [2]}, 'layer 2 is out of range'),
    ({'lock_rate': 0.5, 'layers': [0, 0]}, 'duplicates'),
  ],
)
def test_select_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    cku.select(np.ones((2, 3)), **kwargs)


def test_depth_scaled_layers():
  assert cku.depth_scaled_layers(32) == [8, 9, 10, 11, 12]
  assert cku.depth_scaled_layers(8) == [2, 3]
  assert cku.depth_scaled_layers(4) == [1]


class ScoringVariantsTest(chex.TestCase):
  """Scores under jit and without (and pmap where vmapped)."""

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_token_scores_hand_case(self):
    a = jnp.array([2.0, -1.0, 0.5]).reshape(1, 1, 1, 3)
    g = jnp.array([-0.5, 3.0, 0.0]).reshape(1, 1, 1, 3)
    scores = self.variant(cku.token_scores, static_argnums=2)
    attribution = scores(a, g, 'attribution')
    chex.assert_equal_shape([attribution, a])
    np.testing.assert_allclose(attribution.ravel(), [1.0, 3.0, 0.0])
    act = self.variant(lambda x: cku.token_scores(x, None, 'activation'))
    np.testing.assert_allclose(act(a).ravel(), [2.0, 1.0, 0.5])
    grad = self.variant(lambda x: cku.token_scores(None, x, 'gradient'))
    np.testing.assert_allclose(grad(g).ravel(), [0.5, 3.0, 0.0])

  @chex.variants(with_jit=True, without_jit=True)
  def test_accumulate_scores_streams_with_mask_under_jit(self):
    rng = np.random.default_rng(0)
    a1, g1 = rng.normal(size=(2, 2, 3, 4)), rng.normal(size=(2, 2, 3, 4))
    a2, g2 = rng.normal(size=(2, 1, 3, 4)), rng.normal(size=(2, 1, 3, 4))
    m1 = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    step = self.variant(cku.accumulate_scores, static_argnames='method')
    stats = step(cku.init_scores(2, 4), a1, g1, m1)
    stats = step(stats, a2, g2, None)
    want = np.abs(a1 * g1)[:, m1 > 0].sum(1) + np.abs(a2 * g2).sum((1, 2))
    np.testing.assert_allclose(stats.sums, want, rtol=1e-5)
    assert float(stats.count) == 3 + 3
    np.testing.assert_allclose(cku.mean_scores(stats), want / 6, rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_weight_saliency_hand_case(self):
    params = {
      'layers': {
        '0': {
          'mlp': {
            'gate_proj': {'kernel': jnp.array([[1.0, 2.0], [3.0, 4.0]])},
            'up_proj': {'kernel': jnp.ones((2, 2))},
            'down_proj': {'kernel': jnp.array([[1.0, -1.0], [2.0, 0.0]])},
          }
        }
      }
    }
    grads = jax.tree.map(jnp.ones_like, params)
    s = self.variant(lambda p, g: cku.weight_saliency(p, g, num_layers=2))(
      params, grads
    )
    chex.assert_shape(s, (2, 2))
    # neuron 0: gate col (1+3) + up col (1+1) + down row (1+1) = 8
    # neuron 1: gate col (2+4) + up col 2 + down row (2+0) = 10
    np.testing.assert_allclose(s, [[8.0, 10.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match='num_layers'):
      cku.weight_saliency(params, grads, num_layers=0)
