"""Greedy evaluation: EM and searches per split.

Splits (`pica.stages.context.Questions.evals`): on the knowledge world the
held-out-entity test questions per hop count (`test_<k>hop`) and the
compositional split (unseen relation chains); on files one `test_<stem>`
per test file. The first `eval.num_questions` of each are rolled out
greedily in batches of `eval.batch_size` with the shared sampler.
"""

from __future__ import annotations

import jax
import numpy as np

from pica.stages import context as context_lib


def eval_key(ctx: context_lib.Context) -> jax.Array:
  """The (unused at temperature 0) rollout key of every evaluation."""
  return jax.random.fold_in(ctx.key, 99)


def splits(ctx: context_lib.Context) -> dict[str, list]:
  """`{name: the first eval.num_questions questions}` of every split of
  `ctx.questions.evals` (sorted by name, none empty)."""
  n = ctx.config.eval.num_questions
  return {k: v[:n] for k, v in ctx.questions.evals.items()}


def evaluate(ctx: context_lib.Context, params) -> dict[str, float]:
  """`{<split>_em, <split>_searches}` of the greedy policy `params`."""
  bs = ctx.config.eval.batch_size
  key = eval_key(ctx)
  out = {}
  for name, qs in splits(ctx).items():
    ems, searches = [], []
    for start in range(0, len(qs), bs):
      chunk = qs[start : start + bs]
      ro = ctx.rollout(params, chunk, key, temperature=0.0)
      ems += context_lib.success(ro.texts, chunk).tolist()
      searches += ro.num_searches.tolist()
    out[f'{name}_em'] = float(np.mean(ems))
    out[f'{name}_searches'] = float(np.mean(searches))
  return out
