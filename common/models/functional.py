"""The model as pure functions: split once, apply many times.

    graphdef, params = split(Transformer(config, rngs=nnx.Rngs(0)))
    logits = apply_fn(graphdef)(params, tokens, attention_mask)

Every training loop, sampler and evaluator in the project goes through
these, so there is one apply function: `apply_fn(graphdef)(params, tokens
[B, T], attention_mask [B, T]) -> logits [B, T, V]`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

ApplyFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


def split(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State]:
  """`(graphdef, params)` of a model whose whole state is `nnx.Param`s.

  Raises:
    ValueError: the model holds non-parameter state (e.g. batch statistics
      or RNG counters), which a pure `(params, ...)` function would drop;
      the message names the first such path.
  """
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  leaves = jax.tree_util.tree_leaves_with_path(rest)
  if leaves:
    path = jax.tree_util.keystr(leaves[0][0])
    raise ValueError(
      f'split: the model has non-parameter state at {path}; only models '
      'whose state is all nnx.Param are supported.'
    )
  return graphdef, params


def merge(graphdef: nnx.GraphDef, params: Any) -> nnx.Module:
  """The module of `graphdef` with `params` (inside jit: a traced view)."""
  return nnx.merge(graphdef, params)


def apply_fn(graphdef: nnx.GraphDef) -> ApplyFn:
  """`fn(params, tokens [B, T] int, attention_mask [B, T]) -> logits [B, T, V]`.

  `attention_mask` may be bool or 0/1 integers.
  """

  def fn(params, tokens, attention_mask):
    model = nnx.merge(graphdef, params)
    return model(tokens, attention_mask=attention_mask.astype(bool)).logits

  return fn
