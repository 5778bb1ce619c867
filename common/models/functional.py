"""The model as pure functions: split once, apply many times.

    graphdef, params = split(Transformer(config, rngs=nnx.Rngs(0)))
    logits = apply_fn(graphdef)(params, tokens, attention_mask)

Every training loop, sampler and evaluator in the project goes through
these, so there is one apply function: `apply_fn(graphdef)(params, tokens
[B, T], attention_mask [B, T]) -> logits [B, T, V]`.

Built on it: `token_logprobs` (per-token log-probs of a batch),
`capture_fn` (the per-layer activations the model's `capture=` option
returns) and `mlp_hidden_grads` (MLP hidden activations with the loss
gradient with respect to them, in one forward/backward pass).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from common.rl import logprobs as logprobs_lib

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


def token_logprobs(
  graphdef: nnx.GraphDef, params: Any, batch: Mapping[str, jax.Array]
) -> jax.Array:
  """Per-token log-probs of a batch's own tokens.

  Args:
    graphdef: from `split`.
    params: the model's parameters.
    batch: `{'tokens' [B, T] int, 'attention_mask' [B, T]}`.

  Returns:
    `[B, T]` float: entry `t` is `log p(tokens[t] | tokens[:t])` (entry 0,
    which nothing predicts, is 0; see `common.rl.next_token_logprobs`).
  """
  logits = apply_fn(graphdef)(params, batch['tokens'], batch['attention_mask'])
  return logprobs_lib.next_token_logprobs(logits, batch['tokens'])


def capture_fn(
  graphdef: nnx.GraphDef, sites: Iterable[str]
) -> Callable[[Any, jax.Array, jax.Array], dict[str, jax.Array]]:
  """`fn(params, tokens [B, T], mask [B, T]) -> {site: [L, B, T, d]}`.

  The layer inputs the `Transformer`'s `capture=` option records (see
  `CAPTURE_NAMES`), stacked over the `L` layers; `d` is the site's width
  (`d_model` for `mlp_in`/`attn_in`, `d_ff` for `mlp_hidden`, `n_heads *
  head_dim` for `attn_out`).
  """
  sites = tuple(sites)

  def fn(params, tokens, attention_mask):
    model = nnx.merge(graphdef, params)
    out = model(
      tokens, attention_mask=attention_mask.astype(bool), capture=sites
    )
    return out.captured

  return fn


def mlp_hidden_grads(
  graphdef: nnx.GraphDef,
  loss_from_logits: Callable[[jax.Array, Mapping[str, Any]], jax.Array],
) -> Callable[[Any, Mapping[str, Any]], tuple[jax.Array, jax.Array]]:
  """`fn(params, batch) -> (hidden [L, B, T, F], dL/dhidden [L, B, T, F])`.

  Uses the model's `mlp_hidden_delta` input: the gradient of the loss with
  respect to a zero delta added to every layer's hidden activation
  `hidden = act(gate(x)) * up(x)` is exactly dL/d(hidden), in one forward
  and backward pass.

  Args:
    graphdef: from `split`.
    loss_from_logits: `loss(logits [B, T, V], batch) -> []`.

  Returns:
    `fn(params, batch)` for `batch = {'tokens' [B, T], 'attention_mask'
    [B, T], ...}` (the whole batch is passed on to `loss_from_logits`).
  """

  def fn(params, batch):
    model = nnx.merge(graphdef, params)
    tokens, mask = batch['tokens'], batch['attention_mask'].astype(bool)
    cfg = model.config
    zeros = jnp.zeros((cfg.n_layers, *tokens.shape, cfg.d_ff), cfg.jnp_dtype)

    def loss(delta):
      out = model(
        tokens,
        attention_mask=mask,
        capture=('mlp_hidden',),
        mlp_hidden_delta=delta,
      )
      return loss_from_logits(out.logits, batch), out.captured['mlp_hidden']

    grads, hidden = jax.grad(loss, has_aux=True)(zeros)
    return hidden, grads

  return fn
