"""Stage 1: SFT warm-up on golden Search-R1 traces, on `common.train.fit`.

The policy learns the protocol from golden traces of the train split (BM25
top-k documents, golden document ensured, `think=False`); traces that do
not fit the prompt length or the rollout budget are dropped and counted.
Batch `s` is a pure function of `s` (the index draws of one seeded
generator, made up front), so a resumed run trains on the same batches.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from common import synthetic
from common import train
from common.sampling import multiturn
from common.train import sft
from pica.stages import context as context_lib
from pica.stages import optimizer


def golden_data(ctx: context_lib.Context) -> tuple[dict[str, np.ndarray], int]:
  """The encoded SFT set `{tokens, attention_mask, loss_mask}` [N, T].

  Returns:
    `(data, dropped)`: the traces that fit, and how many did not.

  Raises:
    ValueError: fewer traces fit than `sft.batch_size`.
  """
  c = ctx.config.sft
  qs = ctx.train_qs
  traces = [
    synthetic.golden_search_trace(
      q,
      ctx.document_by_id,
      retrieve=lambda s: ctx.retriever.search(s, ctx.rollout_cfg.topk),
      think=False,
    )
    for q in qs
  ]
  max_len = ctx.prompt_len + ctx.rollout_cfg.response_len
  prompts = [ctx.prompt(q) for q in qs]
  fits = [
    i
    for i, (p, t) in enumerate(zip(prompts, traces, strict=True))
    if len(multiturn.encode(ctx.tok, p, add_bos=True)) <= ctx.prompt_len
    and len(ctx.tok.encode(t)) < ctx.rollout_cfg.response_len
  ]
  if len(fits) < c.batch_size:
    raise ValueError(
      f'only {len(fits)} golden traces fit max_prompt_len / the rollout '
      f'budget; raise rollout.max_new_tokens or max_info_tokens'
    )
  data = sft.encode_sft(
    ctx.tok, [prompts[i] for i in fits], [traces[i] for i in fits], max_len
  )
  return data, len(qs) - len(fits)


def batch_indices(seed: int, n: int, batch_size: int, steps: int) -> np.ndarray:
  """`[steps, batch_size]` rows of each step (without replacement)."""
  rng = np.random.default_rng([seed, 1])
  return np.array(
    [rng.choice(n, batch_size, replace=False) for _ in range(steps)], np.int64
  ).reshape(steps, batch_size)


def train_sft(
  ctx: context_lib.Context,
  workdir: str | os.PathLike,
  num_steps: int | None = None,
) -> tuple[Any, list[dict[str, Any]], dict[str, int]]:
  """Runs (or resumes) SFT from the context's initial parameters.

  Args:
    ctx: the run's context.
    workdir: the stage's folder (checkpoints, metrics.jsonl).
    num_steps: stop after this many steps (default and at most
      `sft.steps`); a later call resumes from there.

  Returns:
    `(params, history, info)`: the SFT policy parameters, the logged
    records of `fit` (`loss`, `token_accuracy`, ...) and
    `{'sft_examples', 'sft_dropped'}`.
  """
  c = ctx.config.sft
  data, dropped = golden_data(ctx)
  n = len(data['tokens'])
  idx = batch_indices(ctx.seed, n, c.batch_size, c.steps)
  tx = optimizer.adam(c.learning_rate, c.warmup_steps)
  step_fn = train.make_train_step(
    sft.make_sft_loss(ctx.apply_fn), tx, has_aux=True
  )
  state = train.TrainState.create(ctx.init_params, tx, rng=ctx.seed)
  state, history = train.fit(
    state,
    step_fn,
    lambda s: {k: v[idx[s]] for k, v in data.items()},
    num_steps=context_lib.stage_steps(num_steps, c.steps, 'sft'),
    workdir=workdir,
    mesh=ctx.mesh,
    checkpoint_every=c.checkpoint_every,
    log_every=c.log_every,
    progress=False,
  )
  return state.params, history, {'sft_examples': n, 'sft_dropped': dropped}
