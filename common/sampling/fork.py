"""Forking a KV cache at anchor positions of a teacher-forced sequence.

Branch sampling (E3-TIR's expert-guided branches, TreeRL-style trees)
continues a forced sequence from several of its positions with several
samples each. Because the cache holds each row's real tokens contiguously
from slot 0 (slot = position, `common.models.kv_cache`), the cache of a
prefix is the cache of the whole sequence with a shorter `lengths` and the
slots beyond it marked invalid; the logits that predict the token after the
prefix are the forced pass's logits at the prefix's last token. So

    state, logits = teacher_force(sampler, tokens, mask)   # one pass
    branches = fork(state, logits, rows, prefix_lengths)   # no recompute
    state, out = sampler.generate(branches, rng, config)

samples continuations of every prefix without running the prefix through
the model again (`experiments/benchmarks/e3tir_branching.py` measures it
against re-prefilling each branch's prefix).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common.models import kv_cache as kv_lib
from common.sampling import sampler as sampler_lib


def _teacher_force(model, tokens, mask, capacity, cache_dtype):
  b = tokens.shape[0]
  cache = kv_lib.init_cache(model.config, b, capacity, cache_dtype)
  out = model(tokens, attention_mask=mask, cache=cache)
  logits = out.logits.astype(jnp.float32)
  t = mask.shape[1]
  col = jnp.max(jnp.where(mask, jnp.arange(t), 0), axis=1)
  last = logits[jnp.arange(b), col]
  state = sampler_lib.SamplerState(
    cache=out.cache, last_logits=last, finished=jnp.zeros((b,), bool)
  )
  return state, logits


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _teacher_force_jit(graphdef, params, tokens, mask, capacity, cache_dtype):
  return _teacher_force(
    nnx.merge(graphdef, params), tokens, mask, capacity, cache_dtype
  )


def teacher_force(
  sampler: sampler_lib.Sampler, tokens, mask
) -> tuple[sampler_lib.SamplerState, jax.Array]:
  """One forced pass over `[B, T]` sequences into a fresh cache.

  Args:
    sampler: the `Sampler` (its parameters, capacity and cache dtype).
    tokens: `[B, T]` int ids (left-padded prompt + right-padded forced
      continuation is fine: only `mask` matters).
    mask: `[B, T]` bool, True for real tokens.

  Returns:
    `(state, logits)`: the sampler state after every real token, and the
    `[B, T, V]` float32 logits (entry t predicts the token after t).
  """
  tokens = jnp.asarray(tokens, jnp.int32)
  mask = jnp.asarray(mask, bool)
  if tokens.ndim != 2 or mask.shape != tokens.shape:
    raise ValueError(
      f'teacher_force: tokens [B, T] and mask of the same shape; got '
      f'{tokens.shape} and {mask.shape}'
    )
  n = np.asarray(mask).sum(1)
  if n.min() < 1 or n.max() > sampler.capacity:
    raise ValueError(
      f'teacher_force: every row needs 1..{sampler.capacity} real tokens '
      f'(sampler capacity); got {n.min()}..{n.max()}'
    )
  return _teacher_force_jit(
    sampler.graphdef,
    sampler.params,
    tokens,
    mask,
    sampler.capacity,
    sampler.cache_dtype,
  )


@jax.jit
def _fork(state, logits, mask, rows, lengths):
  cache = state.cache
  s = cache.capacity
  keys = jnp.take(cache.keys, rows, axis=1)
  values = jnp.take(cache.values, rows, axis=1)
  valid = jnp.arange(s)[None, :] < lengths[:, None]
  # Column (in the padded [B, T] layout) of each row's `lengths - 1`-th
  # real token: the logits there predict the first branch token.
  m = jnp.take(mask, rows, axis=0)
  rank = jnp.cumsum(m, axis=1) - 1
  col = jnp.argmax(m & (rank == (lengths - 1)[:, None]), axis=1)
  last = jnp.take(logits, rows, axis=0)[jnp.arange(rows.shape[0]), col]
  return sampler_lib.SamplerState(
    cache=kv_lib.KVCache(
      keys=keys, values=values, lengths=lengths.astype(jnp.int32), valid=valid
    ),
    last_logits=last,
    finished=jnp.zeros(rows.shape, bool),
  )


def fork(
  state: sampler_lib.SamplerState,
  logits: jax.Array,
  mask,
  rows,
  prefix_lengths,
) -> sampler_lib.SamplerState:
  """Branch states: row `rows[j]` cut to its first `prefix_lengths[j]` tokens.

  Args:
    state: a `teacher_force` state `[B, ...]`.
    logits: its `[B, T, V]` logits.
    mask: the `[B, T]` mask passed to `teacher_force`.
    rows: `[J]` source row of each branch (repeat a row for several
      samples from one prefix).
    prefix_lengths: `[J]` real tokens kept (>= 1, <= the row's length).

  Returns:
    A `[J]`-row `SamplerState` ready for `Sampler.generate`.
  """
  rows = np.asarray(rows, np.int32).reshape(-1)
  lengths = np.asarray(prefix_lengths, np.int32).reshape(-1)
  if rows.shape != lengths.shape or rows.size == 0:
    raise ValueError(
      f'fork: rows and prefix_lengths need one equal, non-zero length; got '
      f'{rows.shape} and {lengths.shape}'
    )
  have = np.asarray(state.cache.lengths)
  if rows.min() < 0 or rows.max() >= have.shape[0]:
    raise ValueError(f'fork: rows must lie in [0, {have.shape[0]})')
  if lengths.min() < 1 or np.any(lengths > have[rows]):
    bad = np.nonzero((lengths < 1) | (lengths > have[rows]))[0][:5].tolist()
    raise ValueError(
      f'fork: prefix_lengths must be in [1, row length]; branches {bad} are not'
    )
  return _fork(state, logits, jnp.asarray(mask, bool), rows, lengths)
