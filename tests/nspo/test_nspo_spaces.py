"""Projector estimation, representations and serialisation."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import nspo
from nspo import spaces as spaces_lib
from tests import tolerances as tol


def _note_case():
  """The research note's §7 check: d_in=64, N=40 general inputs, seed 0."""
  rng = np.random.default_rng(0)
  k = rng.standard_normal((40, 64))
  return k, (k.T @ k)[None]


def test_note_case_null_dimension_and_preservation():
  k, c = _note_case()
  spaces = nspo.from_moments({'s': c}, nspo.relative(5e-5), 'dense')
  p = np.asarray(spaces['s'].matrix[0], np.float64)
  assert int(spaces['s'].null_dim[0]) == 24  # 64 - rank 40
  g = np.random.default_rng(1).standard_normal((64, 32))
  # Preservation: general inputs see no change from the projected update.
  assert np.linalg.norm(k @ p @ g) < 1e-4 * np.linalg.norm(g)
  # Descent direction and non-expansiveness.
  inner = np.sum(g * (p @ g))
  assert inner > 0
  np.testing.assert_allclose(inner, np.linalg.norm(p @ g) ** 2, rtol=1e-5)
  assert np.linalg.norm(p @ g) <= np.linalg.norm(g)


@pytest.mark.parametrize('rep', ['dense', 'complement', 'null_basis'])
def test_representations_agree_and_are_projectors(rep):
  rng = np.random.default_rng(2)
  # Two layers with different ranks (3 and 5 of 8).
  ks = [rng.standard_normal((3, 8)), rng.standard_normal((5, 8))]
  c = np.stack([k.T @ k for k in ks])
  ref = nspo.from_moments({'s': c}, nspo.relative(1e-6), 'dense')['s']
  got = nspo.from_moments({'s': c}, nspo.relative(1e-6), rep)['s']
  assert (
    type(got).__name__
    == {
      'dense': 'DenseProjector',
      'complement': 'ComplementProjector',
      'null_basis': 'NullBasisProjector',
    }[rep]
  )
  np.testing.assert_array_equal(got.null_dim, [5, 3])
  p = np.asarray(nspo.to_dense(got))
  np.testing.assert_allclose(p, ref.matrix, atol=1e-5)
  for layer, k in enumerate(ks):
    pl = p[layer]
    np.testing.assert_allclose(pl @ pl, pl, atol=1e-5)  # idempotent
    np.testing.assert_allclose(pl, pl.T, atol=1e-5)  # symmetric
    np.testing.assert_allclose(k @ pl, 0, atol=1e-5)  # kills protected x
    assert np.trace(pl) == pytest.approx(8 - k.shape[0], abs=1e-4)


def test_auto_picks_cheapest_representation():
  rng = np.random.default_rng(3)
  k_small = rng.standard_normal((3, 16))  # keep rank 3 < d/4: complement
  k_big = rng.standard_normal((13, 16))  # null rank 3 <= d/4: null basis
  k_mid = rng.standard_normal((8, 16))  # both ranks 8 > d/4: dense
  out = nspo.from_moments(
    {
      'a': (k_small.T @ k_small)[None],
      'b': (k_big.T @ k_big)[None],
      'c': (k_mid.T @ k_mid)[None],
    },
    nspo.relative(1e-6),
  )
  assert isinstance(out['a'], nspo.ComplementProjector)
  assert out['a'].basis.shape == (1, 16, 3)
  assert isinstance(out['b'], nspo.NullBasisProjector)
  assert out['b'].basis.shape == (1, 16, 3)
  assert isinstance(out['c'], nspo.DenseProjector)


def test_zero_rank_basis_is_padded_and_saveable(tmp_path):
  # Nothing protected except one direction in layer 0, nothing in layer 1.
  c = np.stack([np.diag([0.0, 0.0, 0.0, 1.0]), np.zeros((4, 4))])
  out = nspo.from_moments({'s': c}, nspo.absolute(0.5), 'complement')
  assert out['s'].basis.shape == (2, 4, 1)
  np.testing.assert_allclose(out['s'].basis[1], 0.0)
  np.testing.assert_allclose(nspo.to_dense(out['s'])[1], np.eye(4), atol=1e-6)
  nspo.save_spaces(str(tmp_path / 'p'), out)
  back = nspo.load_spaces(str(tmp_path / 'p'))
  np.testing.assert_array_equal(back['s'].basis, out['s'].basis)


def test_estimate_from_stats_uses_normalised_moments():
  rng = np.random.default_rng(4)
  x = rng.standard_normal((1, 2, 10, 6)).astype(np.float32)
  x[..., 4:] = 0.0  # two dead input directions
  stats = nspo.accumulate(nspo.init_stats({'mlp_in': (1, 6)}), {'mlp_in': x})
  # Absolute threshold on E[x xᵀ] (entries ~1), not on the raw sum (~20).
  out = nspo.estimate(stats, nspo.absolute(1e-3), 'dense')
  assert int(out['mlp_in'].null_dim[0]) == 2
  p = np.asarray(out['mlp_in'].matrix[0])
  np.testing.assert_allclose(p[4:, 4:], np.eye(2), atol=1e-5)


def test_full_rank_layer_raises_or_freezes():
  c = np.stack([np.eye(4), np.diag([1.0, 1.0, 1.0, 0.0])])
  with pytest.raises(ValueError, match="site 'mlp_in', layer 0: .*every"):
    nspo.from_moments({'mlp_in': c}, nspo.relative(1e-3))
  out = nspo.from_moments(
    {'mlp_in': c}, nspo.relative(1e-3), 'dense', allow_frozen=True
  )
  np.testing.assert_allclose(out['mlp_in'].matrix[0], 0, atol=1e-7)
  np.testing.assert_array_equal(out['mlp_in'].null_dim, [0, 1])


def test_bad_moments_raise():
  with pytest.raises(ValueError, match='representation'):
    nspo.from_moments({'s': np.eye(2)[None]}, nspo.relative(0.1), 'sparse')
  with pytest.raises(ValueError, match=r"site 's'.*\[L, d, d\]"):
    nspo.from_moments({'s': np.eye(2)}, nspo.relative(0.1))
  bad = np.stack([np.eye(2), np.full((2, 2), np.nan)])
  with pytest.raises(ValueError, match="site 's', layer 1"):
    nspo.from_moments({'s': bad}, nspo.relative(0.1))


def test_orbax_round_trip(tmp_path):
  rng = np.random.default_rng(5)
  k = rng.standard_normal((3, 8))
  c = (k.T @ k)[None]
  make = lambda rep: nspo.from_moments({'x': c}, nspo.relative(1e-6), rep)
  spaces = {'mlp_in': make('dense')['x'], 'mlp_hidden': make('complement')['x']}
  nspo.save_spaces(str(tmp_path / 'spaces'), spaces)
  back = nspo.load_spaces(str(tmp_path / 'spaces'))
  assert set(back) == set(spaces)
  for site, p in spaces.items():
    assert type(back[site]) is type(p)
    for a, b in zip(back[site], p, strict=True):
      np.testing.assert_array_equal(a, b)
  with pytest.raises(FileNotFoundError, match='no saved null spaces'):
    nspo.load_spaces(str(tmp_path / 'missing'))
  with pytest.raises(ValueError, match="site 'a'"):
    spaces_lib.from_tree({'a': {'matrix': jnp.zeros((1, 2, 2))}})


class ApplyVariantsTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  @parameterized.parameters('dense', 'complement', 'null_basis')
  def test_apply_equals_dense_matrix_product(self, rep):
    rng = np.random.default_rng(3)
    ks = [rng.standard_normal((3, 8)), rng.standard_normal((5, 8))]
    c = np.stack([k.T @ k for k in ks])
    p = nspo.from_moments({'s': c}, nspo.relative(1e-6), rep)['s']
    u = jnp.asarray(rng.standard_normal((2, 8, 6)), jnp.float32)
    got = self.variant(spaces_lib.apply)(p, u)
    chex.assert_equal_shape([got, u])
    want = np.asarray(nspo.to_dense(p), np.float64) @ np.asarray(u, np.float64)
    # An 8-term projection of O(1) normals in float32: a few ops.
    tol.assert_close(got, want, tol.FEW_OPS, scale=float(np.abs(u).max()))
