"""Supervised fine-tuning of a causal LM: batches and the masked loss.

    batch = encode_sft(tokenizer, prompts, responses, max_len=96)
    loss_fn = make_sft_loss(apply_fn)
    step_fn = make_train_step(loss_fn, tx, has_aux=True)

Batches use the same alignment as `common.rl.policy_loss`: entry `t` of a
per-token array is about token `t` given tokens `< t`, so `loss_mask[t]`
says whether the prediction of token `t` is trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from common.rl import logprobs as logprobs_lib

ApplyFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


def encode_sft(
  tokenizer,
  prompts: Sequence[str],
  responses: Sequence[str],
  max_len: int,
  add_eos: bool = True,
) -> dict[str, np.ndarray]:
  """Encodes prompt/response pairs into a right-padded SFT batch.

  Args:
    tokenizer: a `common.tokenizers.WordTokenizer` (anything with `encode`,
      `pad_id`, `eos_id`).
    prompts: `B` prompt texts (not trained on).
    responses: `B` response texts (trained on).
    max_len: `T`, the padded length; a longer pair raises ValueError.
    add_eos: end each response with `<eos>` (trained on too, so the model
      learns to stop).

  Returns:
    `{'tokens' [B, T] int32, 'attention_mask' [B, T] bool,
    'loss_mask' [B, T] bool}`; `loss_mask` is True on response tokens.
  """
  if len(prompts) != len(responses):
    raise ValueError(
      f'encode_sft: {len(prompts)} prompts but {len(responses)} responses'
    )
  b = len(prompts)
  tokens = np.full((b, max_len), tokenizer.pad_id, np.int32)
  attention = np.zeros((b, max_len), bool)
  loss_mask = np.zeros((b, max_len), bool)
  for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
    p_ids = tokenizer.encode(p)
    r_ids = tokenizer.encode(r, add_eos=add_eos)
    n = len(p_ids) + len(r_ids)
    if not p_ids or not r_ids:
      raise ValueError(f'encode_sft: example {i} has an empty prompt/response')
    if n > max_len:
      raise ValueError(
        f'encode_sft: example {i} has {n} tokens > max_len={max_len}; raise '
        'max_len'
      )
    tokens[i, :n] = p_ids + r_ids
    attention[i, :n] = True
    loss_mask[i, len(p_ids) : n] = True
  return {'tokens': tokens, 'attention_mask': attention, 'loss_mask': loss_mask}


def sft_loss(
  logits: jax.Array, tokens: jax.Array, loss_mask: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Mean next-token cross-entropy over the masked tokens.

  Args:
    logits: `[B, T, V]` causal-LM logits for `tokens`.
    tokens: `[B, T]` int ids.
    loss_mask: `[B, T]`; entry `t` trains the prediction of token `t`
      (entry 0 is ignored: nothing predicts the first token).

  Returns:
    `(loss, {'token_accuracy', 'num_tokens'})`: the loss is the mean over
    the masked tokens of `-log p(tokens[t] | tokens[:t])`.
  """
  mask = jnp.asarray(loss_mask, jnp.float32).at[:, 0].set(0.0)
  logp = logprobs_lib.next_token_logprobs(logits, tokens)
  n = jnp.maximum(mask.sum(), 1.0)
  loss = -(logp * mask).sum() / n
  pred = jnp.argmax(logits[:, :-1], axis=-1)
  hit = jnp.pad(pred == tokens[:, 1:], ((0, 0), (1, 0)))
  acc = (hit * mask).sum() / n
  return loss, {'token_accuracy': acc, 'num_tokens': mask.sum()}


def make_sft_loss(apply_fn: ApplyFn):
  """`loss_fn(params, batch, rng) -> (loss, metrics)` for `make_train_step`.

  Args:
    apply_fn: `apply_fn(params, tokens [B, T], attention_mask [B, T]) ->
      logits [B, T, V]`.

  Returns:
    The loss function over `encode_sft` batches.
  """

  def loss_fn(params, batch: Mapping[str, jax.Array], rng=None):
    del rng
    logits = apply_fn(params, batch['tokens'], batch['attention_mask'])
    mask = jnp.logical_and(batch['loss_mask'], batch['attention_mask'])
    return sft_loss(logits, batch['tokens'], mask)

  return loss_fn
