"""Group-wise asymmetric quantisation: round-to-nearest and GPTQ, in JAX.

Weights follow GPTQ's convention: `w [rows, cols]` maps an input `x [cols]`
to `w @ x [rows]`, and the Hessian `H = 2 X^T X / n [cols, cols]` comes from
calibration inputs `X [n, cols]`. Columns are quantised in groups of
`group_size` consecutive (after act-order: permuted) columns; each row of
each group has its own scale and zero point:

    maxq = 2^bits - 1
    xmin = min(0, min w_g), xmax = max(0, max w_g)   (-1, 1 if equal)
    scale = (xmax - xmin) / maxq          (rounded to float16: stored)
    zero = round(-xmin / scale)           (an integer in [0, maxq])
    q = clip(round(w / scale) + zero, 0, maxq),  w_hat = scale * (q - zero)

GPTQ (Frantar et al. 2023) quantises column by column and moves each
column's error onto the columns not yet quantised, through the upper
Cholesky factor of the damped inverse Hessian:

    H <- H + damp * mean(diag H) * I;  U = chol(H^-1) (upper)
    err_j = (w_j - w_hat_j) / U_jj;    W[:, j:] -= err_j U[j, j:]

With act-order the columns go in order of decreasing `diag(H)`; groups are
contiguous in that order, and `perm` records it (`w[:, perm] = w_hat_p`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

SUPPORTED_BITS = (2, 3, 4, 8)
SCALE_DTYPE = np.float16


class QuantizedMatrix(NamedTuple):
  """A quantised `[rows, cols]` matrix (numpy arrays, as stored).

  Attributes:
    q: `[rows, cols]` uint8 codes in `[0, 2^bits - 1]`, columns in `perm`
      order.
    scale: `[rows, G]` float16, `G = ceil(cols / group_size)`.
    zero: `[rows, G]` uint8 zero points in `[0, 2^bits - 1]`.
    perm: `[cols]` int32: column `perm[j]` of the matrix is code column j.
    bits: bits per code.
    group_size: columns per group (in `perm` order).
  """

  q: np.ndarray
  scale: np.ndarray
  zero: np.ndarray
  perm: np.ndarray
  bits: int
  group_size: int

  @property
  def shape(self) -> tuple[int, int]:
    return tuple(self.q.shape)


def check_bits(bits: int, field: str = 'bits') -> int:
  """`bits` if supported, else a ValueError naming `field` and the set."""
  if isinstance(bits, bool) or int(bits) != bits or bits not in SUPPORTED_BITS:
    raise ValueError(
      f'{field}={bits!r} is not supported; allowed: {SUPPORTED_BITS}.'
    )
  return int(bits)


def find_params(w: jax.Array, maxq) -> tuple[jax.Array, jax.Array]:
  """Per-row min-max scale and zero point of `w [rows, g]` -> `[rows]` each.

  The scale is rounded to float16 (the stored precision) before the zero
  point is computed, so codes and dequantised values agree with the file.
  """
  xmin = jnp.minimum(jnp.min(w, axis=1), 0.0)
  xmax = jnp.maximum(jnp.max(w, axis=1), 0.0)
  same = xmin == xmax
  xmin = jnp.where(same, -1.0, xmin)
  xmax = jnp.where(same, 1.0, xmax)
  scale = (xmax - xmin) / maxq
  scale = scale.astype(SCALE_DTYPE).astype(w.dtype)
  scale = jnp.where(scale > 0, scale, jnp.asarray(1e-7, w.dtype))
  zero = jnp.clip(jnp.round(-xmin / scale), 0, maxq)
  return scale, zero


def quantize(w, scale, zero, maxq) -> jax.Array:
  """Codes `clip(round(w / scale) + zero, 0, maxq)` (float, integer-valued)."""
  return jnp.clip(jnp.round(w / scale) + zero, 0, maxq)


def dequantize_codes(q, scale, zero) -> jax.Array:
  """`scale * (q - zero)`."""
  return scale * (q - zero)


def dequantize(m: QuantizedMatrix) -> np.ndarray:
  """Float32 `[rows, cols]` matrix in the original column order."""
  rows, cols = m.q.shape
  gidx = np.arange(cols) // m.group_size
  scale = m.scale.astype(np.float32)[:, gidx]
  zero = m.zero.astype(np.float32)[:, gidx]
  wp = scale * (m.q.astype(np.float32) - zero)
  out = np.empty((rows, cols), np.float32)
  out[:, m.perm] = wp
  return out


def hessian(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """`H = 2 X^T X / n` of calibration inputs `x [..., cols]` -> `[cols, cols]`.

  Args:
    x: inputs; leading axes are flattened into samples.
    mask: optional `[...]` (x's leading shape), 1 on real tokens.
  """
  x = jnp.reshape(x, (-1, x.shape[-1])).astype(jnp.float32)
  if mask is None:
    n = x.shape[0]
  else:
    m = jnp.reshape(mask, (-1,)).astype(jnp.float32)
    x = x * m[:, None]
    n = jnp.sum(m)
  return 2.0 * (x.T @ x) / jnp.maximum(n, 1.0)


def _check(w, h, bits, group_size):
  check_bits(bits)
  if w.ndim != 2:
    raise ValueError(f'w must be [rows, cols], got shape {w.shape}.')
  if h.shape != (w.shape[1], w.shape[1]):
    raise ValueError(
      f'calibration width mismatch: the weight has {w.shape[1]} input '
      f'columns but the Hessian is {tuple(h.shape)}; the calibration '
      f'activations must have width {w.shape[1]}.'
    )
  if int(group_size) < 1:
    raise ValueError(f'group_size={group_size} must be >= 1.')


def _bucket(n: int, multiple: int) -> int:
  """`n` rounded up to a multiple of `multiple`; up to 1024, to a power of
  two times it (few compilations over many ranks)."""
  k = -(-n // multiple)
  if k * multiple > 1024:
    return k * multiple
  return multiple * (1 << max(0, (k - 1).bit_length()))


def _pad(w, h, perm, group_size):
  """Permutes, then pads rows (zeros) and columns (zeros, identity H)."""
  rows, cols = w.shape
  rp = _bucket(rows, 64)
  cp = _bucket(cols, group_size)
  wp = np.zeros((rp, cp), np.asarray(w).dtype)
  wp[:rows, :cols] = np.asarray(w)[:, perm]
  hp = np.eye(cp, dtype=np.asarray(h).dtype)
  hp[:cols, :cols] = np.asarray(h)[np.ix_(perm, perm)]
  return wp, hp


def _prepare_h(w, h, damp, act_order):
  """Dead columns, act-order permutation and damping (numpy, float64-safe)."""
  w = np.array(w, copy=True)
  h = np.array(h, copy=True)
  dead = np.diag(h) == 0
  h[dead, dead] = 1.0
  w[:, dead] = 0.0
  cols = w.shape[1]
  if act_order:
    perm = np.argsort(-np.diag(h), kind='stable').astype(np.int32)
  else:
    perm = np.arange(cols, dtype=np.int32)
  h = h + damp * np.mean(np.diag(h)) * np.eye(cols, dtype=h.dtype)
  return w, h, perm


@functools.partial(jax.jit, static_argnames=('group_size',))
def _gptq_core(w, h, maxq, group_size: int):
  """GPTQ on padded, permuted `w [R, C]`, damped `h [C, C]` (C % g == 0).

  `maxq` (2^bits - 1) is traced: one compilation per shape, any bits.
  """
  maxq = jnp.asarray(maxq, w.dtype)
  rows, cols = w.shape
  n_groups = cols // group_size
  lower = jnp.linalg.cholesky(h)
  eye = jnp.eye(cols, dtype=w.dtype)
  hinv = jax.scipy.linalg.cho_solve((lower, True), eye)
  u = jnp.triu(jnp.linalg.cholesky(hinv).T)

  def body(j, carry):
    w, q, scales, zeros = carry
    g = j // group_size

    def new_group(_):
      block = jax.lax.dynamic_slice(w, (0, g * group_size), (rows, group_size))
      s, z = find_params(block, maxq)
      return (
        jax.lax.dynamic_update_slice(scales, s[:, None], (0, g)),
        jax.lax.dynamic_update_slice(zeros, z[:, None], (0, g)),
      )

    scales, zeros = jax.lax.cond(
      j % group_size == 0, new_group, lambda _: (scales, zeros), None
    )
    s = jax.lax.dynamic_slice(scales, (0, g), (rows, 1))[:, 0]
    z = jax.lax.dynamic_slice(zeros, (0, g), (rows, 1))[:, 0]
    col = jax.lax.dynamic_slice(w, (0, j), (rows, 1))[:, 0]
    code = quantize(col, s, z, maxq)
    err = (col - dequantize_codes(code, s, z)) / u[j, j]
    w = w - err[:, None] * u[j][None, :]
    q = jax.lax.dynamic_update_slice(q, code[:, None], (0, j))
    return w, q, scales, zeros

  init = (
    w,
    jnp.zeros_like(w),
    jnp.ones((rows, n_groups), w.dtype),
    jnp.zeros((rows, n_groups), w.dtype),
  )
  _, q, scales, zeros = jax.lax.fori_loop(0, cols, body, init)
  return q, scales, zeros


@functools.partial(jax.jit, static_argnames=('group_size',))
def _rtn_core(w, maxq, group_size: int):
  maxq = jnp.asarray(maxq, w.dtype)
  rows, cols = w.shape
  blocks = w.reshape(rows, cols // group_size, group_size)
  s, z = jax.vmap(lambda b: find_params(b, maxq), in_axes=1, out_axes=1)(blocks)
  q = quantize(blocks, s[..., None], z[..., None], maxq)
  return q.reshape(rows, cols), s, z


def _finish(q, scales, zeros, perm, rows, cols, bits, group_size):
  n_groups = -(-cols // group_size)
  return QuantizedMatrix(
    q=np.asarray(q)[:rows, :cols].astype(np.uint8),
    scale=np.asarray(scales)[:rows, :n_groups].astype(SCALE_DTYPE),
    zero=np.asarray(zeros)[:rows, :n_groups].astype(np.uint8),
    perm=perm,
    bits=int(bits),
    group_size=int(group_size),
  )


def gptq(
  w,
  h,
  bits: int,
  group_size: int = 128,
  damp: float = 0.01,
  act_order: bool = True,
) -> QuantizedMatrix:
  """GPTQ-quantises `w [rows, cols]` against the Hessian `h [cols, cols]`.

  Args:
    w: weight; output `w @ x`.
    h: `2 X^T X / n` of calibration inputs (`hessian`).
    bits: one of `SUPPORTED_BITS`.
    group_size: columns per scale/zero group.
    damp: `percdamp`: `damp * mean(diag H)` is added to the diagonal.
    act_order: quantise columns by decreasing `diag(H)`.

  Returns:
    The `QuantizedMatrix` (`dequantize` gives `w_hat`).

  Raises:
    ValueError: unsupported bits, a Hessian whose width is not `cols`.
  """
  w = np.asarray(w)
  h = np.asarray(h)
  _check(w, h, bits, group_size)
  dtype = jnp.result_type(float)  # float64 under jax_enable_x64
  w = w.astype(dtype)
  h = h.astype(dtype)
  rows, cols = w.shape
  w, h, perm = _prepare_h(w, h, damp, act_order)
  wp, hp = _pad(w, h, perm, group_size)
  q, s, z = _gptq_core(
    jnp.asarray(wp), jnp.asarray(hp), float(2**bits - 1), group_size
  )
  return _finish(q, s, z, perm, rows, cols, bits, group_size)


def rtn(w, bits: int, group_size: int = 128) -> QuantizedMatrix:
  """Round-to-nearest with the same quantiser and groups (no calibration)."""
  w = np.asarray(w, np.float32)
  check_bits(bits)
  if w.ndim != 2:
    raise ValueError(f'w must be [rows, cols], got shape {w.shape}.')
  rows, cols = w.shape
  perm = np.arange(cols, dtype=np.int32)
  wp, _ = _pad(w, np.eye(cols, dtype=np.float32), perm, group_size)
  q, s, z = _rtn_core(jnp.asarray(wp), float(2**bits - 1), group_size)
  return _finish(q, s, z, perm, rows, cols, bits, group_size)


def output_error(w, w_hat, x) -> float:
  """`||w x - w_hat x||^2` summed over calibration inputs `x [n, cols]`."""
  d = (np.asarray(w, np.float64) - np.asarray(w_hat, np.float64)) @ np.asarray(
    x, np.float64
  ).T
  return float(np.sum(d**2))
