"""A fixed-capacity key/value cache with ragged per-row lengths.

Each row of the batch keeps its own length: a chunk fed with a validity mask
`[B, T]` writes row b's real tokens, in order, at slots
`lengths[b], lengths[b] + 1, ...` and padding tokens are not written. The
cache therefore always holds each row's real tokens contiguously from slot 0,
and a token's slot equals its position (number of real tokens before it).
That is what lets different rows append chunks of different true lengths
(multi-turn tool use: each row appends a different-length tool output) while
the batch keeps static shapes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from common.models import config as config_lib


class KVCache(NamedTuple):
  """Key/value cache pytree.

  Attributes:
    keys: `[L, B, S, Hkv, Dh]` rotated keys of every layer.
    values: `[L, B, S, Hkv, Dh]` values of every layer.
    lengths: `[B]` int32, number of tokens stored per row.
    valid: `[B, S]` bool, True where a slot holds a real token.
  """

  keys: jax.Array
  values: jax.Array
  lengths: jax.Array
  valid: jax.Array

  @property
  def capacity(self) -> int:
    """Number of slots S per row."""
    return self.keys.shape[2]

  @property
  def batch_size(self) -> int:
    return self.keys.shape[1]


def init_cache(
  config: config_lib.LMConfig,
  batch: int,
  capacity: int,
  dtype=None,
) -> KVCache:
  """Returns an empty cache.

  Args:
    config: the model config (layers, kv heads, head dim).
    batch: batch size B.
    capacity: slots S per row (prompt + every appended/generated token).
    dtype: storage dtype of keys/values; defaults to `config.dtype`.
  """
  if batch <= 0 or capacity <= 0:
    raise ValueError(
      f'init_cache needs batch > 0 and capacity > 0, got batch={batch}, '
      f'capacity={capacity}.'
    )
  dtype = jnp.dtype(config.dtype if dtype is None else dtype)
  shape = (config.n_layers, batch, capacity, config.n_kv_heads, config.head_dim)
  return KVCache(
    keys=jnp.zeros(shape, dtype),
    values=jnp.zeros(shape, dtype),
    lengths=jnp.zeros((batch,), jnp.int32),
    valid=jnp.zeros((batch, capacity), bool),
  )


def chunk_slots(
  lengths: jax.Array, mask: jax.Array, capacity: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Where each token of a chunk goes.

  Args:
    lengths: `[B]` current row lengths.
    mask: `[B, T]` bool, True for real tokens of the chunk.
    capacity: number of slots S.

  Returns:
    write_slots: `[B, T]` int32 slot of each real token, and `capacity`
      (out of range, so dropped by a scatter with `mode='drop'`) for padding.
    query_slots: `[B, T]` int32 slot of the latest real token at or before
      each token (its own slot for a real token). Equals the token's
      position, and bounds what it may attend to causally.
    new_lengths: `[B]` lengths after the chunk.
  """
  mask = mask.astype(bool)
  query_slots = lengths[:, None] + jnp.cumsum(mask, axis=1, dtype=jnp.int32)
  query_slots = query_slots - 1
  write_slots = jnp.where(mask, query_slots, capacity)
  new_lengths = lengths + jnp.sum(mask, axis=1, dtype=jnp.int32)
  return write_slots, query_slots, new_lengths


def write(
  buffer: jax.Array, layer: int, slots: jax.Array, x: jax.Array
) -> jax.Array:
  """Scatters `x` `[B, T, ...]` into `buffer[layer]` at `slots` `[B, T]`."""
  rows = jnp.arange(slots.shape[0])[:, None]
  return buffer.at[layer, rows, slots].set(x.astype(buffer.dtype), mode='drop')


def mark_valid(valid: jax.Array, slots: jax.Array) -> jax.Array:
  """Sets `valid[b, slots[b, t]] = True` (out-of-range slots are skipped)."""
  rows = jnp.arange(slots.shape[0])[:, None]
  return valid.at[rows, slots].set(True, mode='drop')


def check_capacity(new_lengths: jax.Array, capacity: int) -> jax.Array:
  """Raises if a row overflows; returns the `[B]` overflow flags.

  When `new_lengths` is concrete (called eagerly) an overflow raises a
  ValueError naming the rows. Under `jit` the values are unknown, so the
  caller receives the flags and must poison those rows' outputs (the model
  sets their logits to NaN) instead of dropping tokens silently.
  """
  overflow = new_lengths > capacity
  if not isinstance(new_lengths, jax.core.Tracer):
    bad = np.nonzero(np.asarray(overflow))[0]
    if bad.size:
      raise ValueError(
        f'KV cache overflow: rows {bad.tolist()} would hold '
        f'{np.asarray(new_lengths)[bad].tolist()} tokens but the cache '
        f'capacity is {capacity}. Allocate a larger cache.'
      )
  return overflow
