"""Greedy-decoding evaluation of a causal LM on prompt/reference sets.

    evaluate = make_evaluator(graphdef, {'general': batch}, refusal_ids,
                              eos_id, max_new_tokens=R)
    evaluate(params)  # {'general/accuracy': ..., 'general/refusal': ...}

`decode` samples (or greedily decodes, temperature 0) from left-padded
prompts through `common.sampling`'s KV-cache `prefill`/`generate` and is
jit-able, so an RL step can roll out inside its jitted update. `matches`
and `starts_with` are the exact-match judges over the generated ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common.sampling import sampler

EVAL_KEYS = ('prompt', 'prompt_mask', 'target', 'target_mask')


def decode(
  graphdef: nnx.GraphDef,
  params: Any,
  prompt: jax.Array,
  prompt_mask: jax.Array,
  rng: jax.Array,
  max_new_tokens: int,
  temperature: float,
  eos_id: int,
) -> sampler.GenerationOutput:
  """Generates from left-padded prompts (jit-able).

  Args:
    graphdef: from `common.models.split`.
    params: the model's parameters.
    prompt: `[B, P]` int ids, left-padded.
    prompt_mask: `[B, P]`, True/1 on real prompt tokens.
    rng: PRNG key (unused at temperature 0).
    max_new_tokens: N, the decoding budget.
    temperature: 0 for greedy decoding.
    eos_id: the id that ends a sequence.

  Returns:
    `GenerationOutput` with `tokens [B, N]` and `mask [B, N]` (True up to
    and including EOS).
  """
  model = nnx.merge(graphdef, params)
  state = sampler.prefill(
    model, prompt, prompt_mask, prompt.shape[1] + max_new_tokens
  )
  cfg = sampler.GenerationConfig(
    max_new_tokens=max_new_tokens, temperature=temperature, eos_ids=(eos_id,)
  )
  _, out = sampler.generate(model, state, rng, cfg)
  return out


def starts_with(tokens: jax.Array, prefix: jax.Array) -> jax.Array:
  """`[B]` bool: whether each row of `tokens [B, N]` starts with `prefix [n]`.

  False for every row when `n > N`.
  """
  n = prefix.shape[0]
  if n > tokens.shape[1]:
    return jnp.zeros(tokens.shape[:1], bool)
  return jnp.all(tokens[:, :n] == prefix[None], axis=1)


def matches(
  tokens: jax.Array, target: jax.Array, target_mask: jax.Array
) -> jax.Array:
  """`[B]` bool: exact match of generated ids with a reference.

  Args:
    tokens: `[B, N]` generated ids.
    target: `[B, R]` reference ids (the response followed by EOS).
    target_mask: `[B, R]`, True/1 on the reference's tokens.

  Returns:
    True where every reference token is reproduced at its position and the
    reference fits in the `N` generated tokens (what follows EOS is
    ignored).
  """
  r = min(tokens.shape[1], target.shape[1])
  ok = (tokens[:, :r] == target[:, :r]) | ~target_mask[:, :r].astype(bool)
  fits = ~jnp.any(target_mask[:, r:].astype(bool), axis=1)
  return jnp.all(ok, axis=1) & fits


def make_evaluator(
  graphdef: nnx.GraphDef,
  sets: Mapping[str, Mapping[str, np.ndarray]],
  refusal: np.ndarray,
  eos_id: int,
  max_new_tokens: int,
):
  """Greedy-decoding evaluator over named example sets.

  All sets are decoded in one jitted call (compiled once per evaluator).

  Args:
    graphdef: from `common.models.split`.
    sets: `{name: batch}` with `prompt [B, P]`, `prompt_mask [B, P]`,
      `target [B, R]`, `target_mask [B, R]` (e.g. from
      `common.synthetic.safety.encode`); every set has the same P and R.
    refusal: `[n]` ids of the refusal string + EOS.
    eos_id: EOS id.
    max_new_tokens: decoding budget N.

  Returns:
    `evaluate(params) -> {f'{name}/accuracy', f'{name}/refusal'}` floats:
    the exact-match rate against the reference response (`matches`), and
    the rate of responses that start with `refusal` (`starts_with`).
  """
  for name, batch in sets.items():
    missing = [k for k in EVAL_KEYS if k not in batch]
    if missing:
      raise ValueError(f'eval set {name!r} lacks {missing}; needs {EVAL_KEYS}.')
  refusal = jnp.asarray(refusal)

  @jax.jit
  def run(params, prompt, prompt_mask, target, target_mask):
    out = decode(
      graphdef,
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
  cat = {k: np.concatenate([sets[n][k] for n in names]) for k in EVAL_KEYS}

  def evaluate(params) -> dict[str, float]:
    acc, ref = run(params, *(cat[k] for k in EVAL_KEYS))
    acc, ref = np.asarray(acc), np.asarray(ref)
    res, start = {}, 0
    for name, n in zip(names, sizes, strict=True):
      res[f'{name}/accuracy'] = float(np.mean(acc[start : start + n]))
      res[f'{name}/refusal'] = float(np.mean(ref[start : start + n]))
      start += n
    return res

  return evaluate


def final_eval(
  history: list[Mapping[str, Any]],
  evaluate,
  params,
  key: str,
) -> dict[str, float]:
  """The evaluation a loop logged at its last step, or a fresh one.

  `fit` / `fit_on_policy` log `eval_<name>` entries at `eval_every` steps
  and at the end; reading them back avoids decoding the final parameters a
  second time (and gives the same numbers on a resumed run).

  Args:
    history: the loop's records (`{'step', ...}` dicts).
    evaluate: `params -> {name: value}`, called only when the last step
      has no `key` entry.
    params: the final parameters.
    key: the logged entry that marks a complete evaluation record (e.g.
      `'eval_accuracy'`).

  Returns:
    `{name: value}` without the `eval_` prefix.
  """
  last = max(h['step'] for h in history)
  for h in history:
    if h['step'] == last and key in h:
      return {k[5:]: v for k, v in h.items() if k.startswith('eval_')}
  return evaluate(params)
