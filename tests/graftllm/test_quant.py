"""GPTQ / round-to-nearest: hand cases, a NumPy reference, GPTQ <= RTN."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from graftllm import quant
from tests import tolerances


class QuantiserTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_hand_two_bit_grid(self):
    # min 0, max 3, 2 bits: scale 1, zero 0, codes = values.
    w = jnp.array([[0.0, 1.0, 2.0, 3.0], [-1.5, 0.0, 0.75, 1.5]])

    @self.variant
    def f(w):
      s, z = quant.find_params(w, 3.0)
      q = quant.quantize(w, s[:, None], z[:, None], 3.0)
      return s, z, q, quant.dequantize_codes(q, s[:, None], z[:, None])

    s, z, q, dq = f(w)
    np.testing.assert_array_equal(s, [1.0, 1.0])
    # Row 2: range [-1.5, 1.5] / 3 = 1.0, zero = round(1.5) = 2.
    np.testing.assert_array_equal(z, [0.0, 2.0])
    np.testing.assert_array_equal(q, [[0, 1, 2, 3], [0, 2, 3, 3]])
    np.testing.assert_array_equal(dq, [[0, 1, 2, 3], [-2, 0, 1, 1]])

  def test_constant_row_uses_unit_range(self):
    s, z = quant.find_params(jnp.zeros((1, 4)), 3.0)
    assert float(s[0]) == pytest.approx(2.0 / 3.0, rel=1e-3)  # float16
    assert float(z[0]) == 2.0


def _reference_gptq(w, h, bits, group_size, damp, act_order, block=4):
  """GPTQ as in the authors' `fasterquant` (lazy batches), NumPy float64."""
  w = np.array(w, np.float64)
  h = np.array(h, np.float64)
  maxq = 2**bits - 1
  rows, cols = w.shape
  dead = np.diag(h) == 0
  h[dead, dead] = 1
  w[:, dead] = 0
  perm = (
    np.argsort(-np.diag(h), kind='stable') if act_order else np.arange(cols)
  )
  w = w[:, perm]
  h = h[np.ix_(perm, perm)]
  h += damp * np.mean(np.diag(h)) * np.eye(cols)
  hinv = np.linalg.cholesky(np.linalg.inv(h)).T  # upper
  q = np.zeros_like(w)
  scale = zero = None

  def params(x):
    xmin = np.minimum(x.min(1), 0)
    xmax = np.maximum(x.max(1), 0)
    same = xmin == xmax
    xmin[same], xmax[same] = -1, 1
    s = ((xmax - xmin) / maxq).astype(np.float16).astype(np.float64)
    return s, np.clip(np.round(-xmin / s), 0, maxq)

  for i1 in range(0, cols, block):
    i2 = min(i1 + block, cols)
    w1 = w[:, i1:i2].copy()
    err1 = np.zeros_like(w1)
    h1 = hinv[i1:i2, i1:i2]
    for i in range(i2 - i1):
      if (i1 + i) % group_size == 0:
        scale, zero = params(w[:, i1 + i : i1 + i + group_size])
      col = w1[:, i]
      code = np.clip(np.round(col / scale) + zero, 0, maxq)
      q[:, i1 + i] = code
      err = (col - scale * (code - zero)) / h1[i, i]
      w1[:, i:] -= np.outer(err, h1[i, i:])
      err1[:, i] = err
    w[:, i1:i2] = w1
    w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
  return q, perm


def _problem(rows=6, cols=12, n=64, seed=0):
  rng = np.random.default_rng(seed)
  mix = rng.normal(size=(cols, cols))
  x = rng.normal(size=(n, cols)) @ mix  # correlated inputs
  x[:, 3] = 0.0  # one dead input
  w = rng.normal(size=(rows, cols))
  return (
    w,
    x,
    np.asarray(quant.hessian(jnp.asarray(x, jnp.float32)), np.float64),
  )


@pytest.mark.parametrize('bits,group_size,act_order', [
  (2, 4, True), (3, 12, True), (4, 4, False), (8, 8, True),
])  # fmt: skip
def test_gptq_matches_numpy_reference(bits, group_size, act_order):
  w, x, _ = _problem()
  h = 2.0 * x.T @ x / x.shape[0]
  with jax.enable_x64(True):
    m = quant.gptq(w, h, bits, group_size, damp=0.01, act_order=act_order)
  q_ref, perm_ref = _reference_gptq(w, h, bits, group_size, 0.01, act_order)
  np.testing.assert_array_equal(m.perm, perm_ref)
  np.testing.assert_array_equal(m.q, q_ref.astype(np.uint8))
  assert m.scale.shape == (6, math.ceil(12 / group_size))


@pytest.mark.parametrize('bits', quant.SUPPORTED_BITS)
def test_gptq_error_at_most_rtn(bits):
  w, x, h = _problem(rows=16, cols=32, n=256, seed=bits)
  g = quant.gptq(w, h, bits, group_size=8)
  r = quant.rtn(w, bits, group_size=8)
  e_g = quant.output_error(w, quant.dequantize(g), x)
  e_r = quant.output_error(w, quant.dequantize(r), x)
  assert e_g <= e_r, (e_g, e_r)


def test_dequantize_inverts_permutation():
  w, x, h = _problem(rows=4, cols=12)
  m = quant.gptq(w, h, 8, group_size=4)
  # 8 bits: the reconstruction is close to w column by column (dead
  # column 3 is zeroed by GPTQ, as in the reference).
  want = w.copy()
  want[:, 3] = 0.0
  tolerances.assert_close(
    quant.dequantize(m), want, 0.05, scale=np.abs(w).max()
  )


def test_bad_inputs_name_the_problem():
  w, _, h = _problem()
  with pytest.raises(
    ValueError, match=r'bits=5 is not supported.*\(2, 3, 4, 8\)'
  ):
    quant.gptq(w, h, 5)
  with pytest.raises(ValueError, match='calibration width mismatch.*width 12'):
    quant.gptq(w, np.eye(7), 4)
  with pytest.raises(ValueError, match='bits=16'):
    quant.rtn(w, 16)
