"""Language-model glue shared by the NSPO and CKU experiments.

Pure functions over a split NNX `Transformer` (`graphdef`, `params`): the
apply function, the SFT loss, batched decoding through `common.sampling`,
and the task metrics (general accuracy, refusal rate, recipe recall).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common import models
from common import rl
from common.sampling import sampler
from common.train import sft as sft_lib


def init_model(config: models.LMConfig, seed: int) -> tuple[Any, Any]:
  """`(graphdef, params)` of a freshly initialised `Transformer`."""
  model = models.Transformer(config, rngs=nnx.Rngs(seed))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  if jax.tree.leaves(rest):
    raise ValueError('the model has non-parameter state; not supported here.')
  return (graphdef, rest), params


def merge(model_def, params):
  graphdef, rest = model_def
  return nnx.merge(graphdef, params, rest)


def apply_fn(model_def):
  """`(params, tokens [B, T], mask [B, T]) -> logits [B, T, V]`."""

  def fn(params, tokens, attention_mask):
    model = merge(model_def, params)
    return model(tokens, attention_mask=attention_mask.astype(bool)).logits

  return fn


def token_logprobs(model_def, params, batch) -> jax.Array:
  """`[B, T]` log p(token_t | tokens_<t) of `batch['tokens']`."""
  logits = apply_fn(model_def)(params, batch['tokens'], batch['attention_mask'])
  return rl.next_token_logprobs(logits, batch['tokens'])


def sft_loss(model_def):
  """`loss_fn(params, batch, rng) -> (nll, metrics)` on `batch['loss_mask']`.

  The shared SFT objective (`common.train.sft.make_sft_loss`) over this
  model's apply function.
  """
  return sft_lib.make_sft_loss(apply_fn(model_def))


def decode(
  model_def,
  params,
  prompt: jax.Array,
  prompt_mask: jax.Array,
  rng: jax.Array,
  max_new_tokens: int,
  temperature: float,
  eos_id: int,
) -> sampler.GenerationOutput:
  """Generates from left-padded prompts `[B, P]` (jit-able)."""
  model = merge(model_def, params)
  state = sampler.prefill(
    model, prompt, prompt_mask, prompt.shape[1] + max_new_tokens
  )
  cfg = sampler.GenerationConfig(
    max_new_tokens=max_new_tokens, temperature=temperature, eos_ids=(eos_id,)
  )
  _, out = sampler.generate(model, state, rng, cfg)
  return out


def starts_with(tokens: jax.Array, prefix: jax.Array) -> jax.Array:
  """`[B]` whether each row of `tokens [B, N]` starts with `prefix [n]`."""
  n = prefix.shape[0]
  if n > tokens.shape[1]:
    return jnp.zeros(tokens.shape[:1], bool)
  return jnp.all(tokens[:, :n] == prefix[None], axis=1)


def matches(
  tokens: jax.Array, target: jax.Array, target_mask: jax.Array
) -> jax.Array:
  """`[B]` exact match of generated `[B, N]` with reference `[B, R]` + EOS."""
  r = min(tokens.shape[1], target.shape[1])
  ok = (tokens[:, :r] == target[:, :r]) | ~target_mask[:, :r].astype(bool)
  fits = ~jnp.any(target_mask[:, r:].astype(bool), axis=1)
  return jnp.all(ok, axis=1) & fits


def make_evaluator(
  model_def,
  sets: Mapping[str, Mapping[str, np.ndarray]],
  refusal: np.ndarray,
  eos_id: int,
  max_new_tokens: int,
):
  """Greedy-decoding evaluator over named example sets.

  Args:
    model_def: from `init_model`.
    sets: `{name: encoded batch}` (from `safety_data.encode`).
    refusal: `[n]` ids of the refusal string + EOS.
    eos_id: EOS id.
    max_new_tokens: decoding budget.

  Returns:
    `evaluate(params) -> {f'{name}/accuracy', f'{name}/refusal'}` floats:
    exact match with the reference response, and the refusal rate.
  """
  refusal = jnp.asarray(refusal)

  @jax.jit
  def run(params, prompt, prompt_mask, target, target_mask):
    out = decode(
      model_def,
      params,
      prompt,
      prompt_mask,
      jax.random.key(0),
      max_new_tokens,
      0.0,
      eos_id,
    )
    return (
      matches(out.tokens, target, target_mask),
      starts_with(out.tokens, refusal),
    )

  names = list(sets)
  sizes = [len(sets[n]['prompt']) for n in names]
  cat = {
    k: np.concatenate([sets[n][k] for n in names])
    for k in ('prompt', 'prompt_mask', 'target', 'target_mask')
  }

  def evaluate(params) -> dict[str, float]:
    acc, ref = run(
      params, cat['prompt'], cat['prompt_mask'], cat['target'],
      cat['target_mask']
    )  # fmt: skip
    acc, ref = np.asarray(acc), np.asarray(ref)
    res, start = {}, 0
    for name, n in zip(names, sizes, strict=True):
      res[f'{name}/accuracy'] = float(np.mean(acc[start : start + n]))
      res[f'{name}/refusal'] = float(np.mean(ref[start : start + n]))
      start += n
    return res

  return evaluate


def capture_fn(model_def, sites: tuple[str, ...]):
  """`(params, tokens, mask) -> {site: [L, B, T, d]}` layer inputs."""
  sites = tuple(sites)

  def fn(params, tokens, attention_mask):
    model = merge(model_def, params)
    out = model(
      tokens, attention_mask=attention_mask.astype(bool), capture=sites
    )
    return out.captured

  return fn


def mlp_hidden_grads(model_def, loss_from_logits):
  """`(params, batch) -> (mlp_hidden [L,B,T,F], dL/dmlp_hidden [L,B,T,F])`.

  Uses the model's `mlp_hidden_delta` input: the gradient of the loss with
  respect to a zero delta added to every layer's hidden activation is
  exactly dL/d(mlp_hidden), in one forward and backward pass.
  `loss_from_logits(logits [B, T, V], batch) -> []`.
  """

  def fn(params, batch):
    model = merge(model_def, params)
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
