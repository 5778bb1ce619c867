"""The explained-variance rank rule, magnitude pruning, bit packing."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from graftllm import bitpack
from graftllm import prune
from graftllm import svd
from tests import tolerances


def _known_spectrum(s, d_in=7, d_out=5, seed=0):
  rng = np.random.default_rng(seed)
  q1, _ = np.linalg.qr(rng.normal(size=(d_in, d_in)))
  q2, _ = np.linalg.qr(rng.normal(size=(d_out, d_out)))
  k = len(s)
  return (q1[:, :k] * np.asarray(s)) @ q2[:, :k].T


@pytest.mark.parametrize('beta,rank', [
  (0.5, 1), (16 / 30, 1), (0.8, 2), (0.9, 3), (0.99, 4), (1.0, 4),
])  # fmt: skip
def test_variance_rank_on_known_spectrum(beta, rank):
  # s^2 = 16, 9, 4, 1 (sum 30): cumulative 16, 25, 29, 30.
  assert svd.variance_rank([4.0, 3.0, 2.0, 1.0], beta) == rank


def test_truncated_svd_keeps_the_rank_and_the_error():
  kern = _known_spectrum([4.0, 3.0, 2.0, 1.0]).astype(np.float32)
  f = svd.truncated_svd(kern, beta=0.8)
  assert f.s.size == 2
  tolerances.assert_close(f.s, [4.0, 3.0], tolerances.FEW_OPS)
  err = np.linalg.norm(kern - svd.dense(f))
  tolerances.assert_close(err, np.sqrt(5.0), tolerances.FEW_OPS)
  assert f.v.shape == (7, 2) and f.u.shape == (5, 2)


@pytest.mark.parametrize('beta', [0.0, -0.1, 1.5, float('nan')])
def test_beta_outside_unit_interval(beta):
  with pytest.raises(ValueError, match=r'beta=.* allowed: \(0, 1\]'):
    svd.variance_rank([1.0], beta)


def test_rank_larger_than_min_dims():
  with pytest.raises(ValueError, match=r'rank=6 .*\[1, 5\]'):
    svd.truncated_svd(np.ones((7, 5)), rank=6)


def test_magnitude_prune_hand_case():
  d = np.array([[0.1, -3.0], [2.0, 0.5]])
  s = prune.magnitude_prune(d, 0.5)
  np.testing.assert_array_equal(s.indices, [1, 2])
  np.testing.assert_array_equal(s.values, np.float16([-3.0, 2.0]))
  assert s.indices.dtype == np.uint16
  np.testing.assert_array_equal(prune.densify(s), [[0, -3], [2, 0]])


@pytest.mark.parametrize('alpha', [0.0, 1.01, -1.0])
def test_alpha_outside_unit_interval(alpha):
  with pytest.raises(ValueError, match=r'alpha=.* allowed: \(0, 1\]'):
    prune.magnitude_prune(np.ones(3), alpha)


def test_pack_hand_bytes():
  # 2 bits: 1 | 2 << 2 | 3 << 4 | 0 << 6 = 57; 4 bits: low nibble first.
  np.testing.assert_array_equal(bitpack.pack([1, 2, 3, 0], 2), [57])
  np.testing.assert_array_equal(bitpack.pack([0xA, 0x5], 4), [0x5A])
  np.testing.assert_array_equal(bitpack.pack([7, 1, 2], 3), [0b10001111, 0b0])


@pytest.mark.parametrize('bits', range(1, 9))
def test_pack_unpack_round_trip(bits):
  rng = np.random.default_rng(bits)
  codes = rng.integers(0, 2**bits, size=37)
  data = bitpack.pack(codes, bits)
  assert data.size == bitpack.packed_size(37, bits) == -(-37 * bits // 8)
  np.testing.assert_array_equal(bitpack.unpack(data, bits, 37), codes)


def test_pack_rejects_codes_that_do_not_fit():
  with pytest.raises(ValueError, match=r'\[0, 3\] for 2-bit'):
    bitpack.pack([4], 2)
  with pytest.raises(ValueError, match='need 2'):
    bitpack.unpack(np.zeros(1, np.uint8), 4, 3)


class SvdVariantsTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_lowrank_apply_matches_merged(self):
    from graftllm import fusion

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
    v = rng.normal(size=(6, 2)).astype(np.float32)
    s = np.array([2.0, 0.5], np.float32)
    u = rng.normal(size=(4, 2)).astype(np.float32)
    got = self.variant(fusion.lowrank_apply)(x, k, v, s, u)
    want = np.asarray(x) @ np.asarray(fusion.merge_factors(k, v, s, u))
    tolerances.assert_close(got, want, tolerances.FEW_OPS)
