"""Causal ring attention with zig-zag load balancing, for any ring size.

A group of packed sequences runs on a ring of d devices. Each sequence is
padded to a multiple of 2d tokens and cut into 2d chunks; device r holds
chunk r (its "a" half) and chunk 2d-1-r (its "b" half) of every sequence,
so every device has the same causal work (Megatron's zig-zag layout).
``zigzag_layout`` builds that order on the host.

``ring_attention`` runs inside ``jax.shard_map``: K/V (with their segment
ids and positions) travel around the ring with ``lax.ppermute`` while an
online softmax accumulates. At ring step s, device r sees the K/V of device
src = (r - s) mod d. For src < r only the "a" keys can be visible (all of
q against half of k); for src > r only the "b" queries can see anything
(half of q against all of k): each step does half a block, on every device.
Masks (same segment, key position <= query position, key not padding) are
applied in every block, so the skipped halves are an optimisation only.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

NEG_INF = -1e30


@dataclasses.dataclass(frozen=True)
class ZigzagLayout:
  """Host-side order of a packed group on a ring of ``degree`` devices.

  Attributes:
    source: int64 [T] index into the concatenation of the sequences' tokens,
      -1 for padding; device r's shard is source[r * T/d:(r + 1) * T/d].
    segment: int32 [T] sequence index within the group, -1 for padding.
    position: int32 [T] position of the token in its sequence (0 for pad).
    degree: ring size d.
  """

  source: np.ndarray
  segment: np.ndarray
  position: np.ndarray
  degree: int

  @property
  def length(self) -> int:
    return len(self.source)


def padded_length(seq_lens, degree):
  """Tokens of a group after padding each sequence to a multiple of 2d."""
  two_d = 2 * degree
  return int(sum(-(-int(n) // two_d) * two_d for n in seq_lens))


def zigzag_layout(seq_lens, degree, total_len=None) -> ZigzagLayout:
  """Zig-zag order of packed sequences for a ring of ``degree`` devices.

  Args:
    seq_lens: lengths of the group's sequences.
    degree: d >= 1.
    total_len: pad the group to this many tokens (a multiple of 2d and at
      least ``padded_length``); defaults to ``padded_length``.

  Returns:
    ZigzagLayout with T = total_len.
  """
  if int(degree) != degree or degree < 1:
    raise ValueError(f'degree={degree!r}: must be an int >= 1.')
  seq_lens = [int(n) for n in seq_lens]
  if not seq_lens or min(seq_lens) < 1:
    raise ValueError(f'seq_lens={seq_lens}: need >= 1 sequence of >= 1 token.')
  two_d = 2 * degree
  need = padded_length(seq_lens, degree)
  total_len = need if total_len is None else int(total_len)
  if total_len < need or total_len % two_d:
    raise ValueError(
      f'total_len={total_len}: must be a multiple of 2d={two_d} and >= '
      f'{need} (the padded group).'
    )
  starts = np.concatenate([[0], np.cumsum(seq_lens)[:-1]])
  # The padding tail is one more "sequence" of pad tokens (segment -1).
  lens = seq_lens + [0]
  chunks = [-(-n // two_d) for n in seq_lens] + [(total_len - need) // two_d]
  src, seg, pos = [], [], []
  for r in range(degree):
    for chunk_id in (r, two_d - 1 - r):
      for i, (n, c) in enumerate(zip(lens, chunks, strict=True)):
        p = np.arange(chunk_id * c, (chunk_id + 1) * c)
        valid = p < n
        if i < len(seq_lens):
          src.append(np.where(valid, starts[i] + p, -1))
          seg.append(np.where(valid, i, -1))
        else:
          src.append(np.full(c, -1))
          seg.append(np.full(c, -1))
        pos.append(np.where(valid, p, 0))
  return ZigzagLayout(
    np.concatenate(src).astype(np.int64),
    np.concatenate(seg).astype(np.int32),
    np.concatenate(pos).astype(np.int32),
    int(degree),
  )


def _block(carry, q, k, v, q_seg, q_pos, k_seg, k_pos, scale):
  """Online-softmax update of (m, l, o) with one masked K/V block.

  Shapes: q [Tq, H, D], k/v [Tk, H, D], segments/positions [Tq] / [Tk];
  m (running max), den (softmax denominator) [H, Tq]; o [Tq, H, D].
  """
  m, den, o = carry
  s = jnp.einsum('qhd,khd->hqk', q, k) * scale
  mask = (q_seg[:, None] == k_seg[None, :]) & (q_pos[:, None] >= k_pos[None, :])
  mask = (mask & (k_seg[None, :] >= 0))[None]
  s = jnp.where(mask, s, NEG_INF)
  m_new = jnp.maximum(m, s.max(axis=-1))
  p = jnp.where(mask, jnp.exp(s - m_new[..., None]), 0.0)
  corr = jnp.exp(m - m_new)
  den_new = den * corr + p.sum(axis=-1)
  o_new = o * corr.T[..., None] + jnp.einsum('hqk,khd->qhd', p, v)
  return m_new, den_new, o_new


def _finish(m, den, o):
  del m
  safe = jnp.where(den > 0, den, 1.0)
  return jnp.where((den > 0).T[..., None], o / safe.T[..., None], 0.0)


def dense_attention(q, k, v, segment, position):
  """Reference masked attention on one device.

  Args:
    q, k, v: [T, H, D].
    segment: int [T] (-1 = padding).
    position: int [T].

  Returns:
    [T, H, D]; padding queries give 0.
  """
  t, h, _ = q.shape
  carry = (
    jnp.full((h, t), NEG_INF, q.dtype),
    jnp.zeros((h, t), q.dtype),
    jnp.zeros_like(q),
  )
  carry = _block(
    carry, q, k, v, segment, position, segment, position, q.shape[-1] ** -0.5
  )
  return _finish(*carry)


def ring_attention(q, k, v, segment, position, axis_name, axis_size):
  """Causal zig-zag ring attention; call inside ``jax.shard_map``.

  Args:
    q, k, v: this device's shard [T_local, H, D] in ``zigzag_layout`` order
      (first half: "a" chunks, second half: "b" chunks).
    segment: int [T_local] segment ids (-1 = padding).
    position: int [T_local] positions within their sequences.
    axis_name: the ring's mesh axis.
    axis_size: d, the number of devices on that axis.

  Returns:
    [T_local, H, D] attention output (0 for padding queries).
  """
  t, h, _ = q.shape
  if t % 2:
    raise ValueError(f'local length {t} must be even (zig-zag halves).')
  half = t // 2
  scale = q.shape[-1] ** -0.5
  rank = jax.lax.axis_index(axis_name)
  # Under `shard_map` the inputs vary over the ring axis and so must the
  # carry; under `vmap` (e.g. `chex.fake_pmap`) there is no such type.
  varying = axis_name in getattr(jax.typeof(q), 'vma', frozenset())
  vary = lambda x: (
    jax.lax.pcast(x, (axis_name,), to='varying') if varying else x
  )
  carry = (
    vary(jnp.full((h, t), NEG_INF, q.dtype)),
    vary(jnp.zeros((h, t), q.dtype)),
    vary(jnp.zeros(q.shape, q.dtype)),
  )
  carry = _block(carry, q, k, v, segment, position, segment, position, scale)
  if axis_size == 1:
    return _finish(*carry)
  perm = [(i, (i + 1) % axis_size) for i in range(axis_size)]

  def lower(carry, kv):  # src < rank: all queries vs the "a" keys
    kk, vv, ks, kp = kv
    return _block(
      carry,
      q,
      kk[:half],
      vv[:half],
      segment,
      position,
      ks[:half],
      kp[:half],
      scale,
    )

  def upper(carry, kv):  # src > rank: the "b" queries vs all keys
    kk, vv, ks, kp = kv
    m, den, o = carry
    part = (m[:, half:], den[:, half:], o[half:])
    m2, den2, o2 = _block(
      part, q[half:], kk, vv, segment[half:], position[half:], ks, kp, scale
    )
    return (
      m.at[:, half:].set(m2),
      den.at[:, half:].set(den2),
      o.at[half:].set(o2),
    )

  def step(state, s):
    carry, kv = state
    kv = jax.tree.map(lambda x: jax.lax.ppermute(x, axis_name, perm), kv)
    src = (rank - s) % axis_size
    carry = jax.lax.cond(src < rank, lower, upper, carry, kv)
    return (carry, kv), None

  (carry, _), _ = jax.lax.scan(
    step, (carry, (k, v, segment, position)), jnp.arange(1, axis_size)
  )
  return _finish(*carry)
