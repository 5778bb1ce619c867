"""Packing b-bit unsigned codes into bytes (little-endian bit order).

Codes are laid out as one bit stream: code i occupies bits `[i*b, (i+1)*b)`
of the stream, least significant bit first, so two 4-bit codes share a byte
(low nibble first), four 2-bit codes share a byte, and 3-bit codes cross
byte boundaries. The last byte is zero-padded.
"""

from __future__ import annotations

import numpy as np


def packed_size(n: int, bits: int) -> int:
  """Bytes that `n` codes of `bits` bits take."""
  return -(-n * bits // 8)


def pack(codes, bits: int) -> np.ndarray:
  """`[n]` (any shape, flattened) codes in `[0, 2^bits)` -> uint8 bytes.

  Raises:
    ValueError: bits outside 1..8, or a code that does not fit.
  """
  if not 1 <= bits <= 8:
    raise ValueError(f'bits={bits} must be in 1..8 to pack into bytes.')
  c = np.asarray(codes).reshape(-1)
  if c.size and (c.min() < 0 or c.max() >= 2**bits):
    raise ValueError(
      f'codes must lie in [0, {2**bits - 1}] for {bits}-bit packing; got '
      f'[{c.min()}, {c.max()}].'
    )
  c = c.astype(np.uint8)
  if bits == 8:
    return c.copy()
  # [n, bits] bit planes, LSB first, then one stream.
  planes = (c[:, None] >> np.arange(bits, dtype=np.uint8)[None]) & 1
  return np.packbits(planes.reshape(-1), bitorder='little')


def unpack(data, bits: int, n: int) -> np.ndarray:
  """Inverse of `pack`: the first `n` codes as uint8 `[n]`.

  Raises:
    ValueError: `data` is shorter than `n` codes need.
  """
  data = np.asarray(data, np.uint8).reshape(-1)
  need = packed_size(n, bits)
  if data.size < need:
    raise ValueError(
      f'packed data has {data.size} bytes; {n} codes of {bits} bits need '
      f'{need}.'
    )
  if bits == 8:
    return data[:n].copy()
  stream = np.unpackbits(data[:need], bitorder='little')[: n * bits]
  planes = stream.reshape(n, bits).astype(np.uint8)
  return np.sum(
    planes << np.arange(bits, dtype=np.uint8)[None], axis=1, dtype=np.uint8
  )
