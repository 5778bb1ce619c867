"""Evaluation: greedy EM, sampled EM and searches per split.

Splits (`pica.stages.context.Questions.evals`): on the knowledge world the
held-out-entity test questions per hop count (`test_<k>hop`) and the
compositional split (unseen relation chains); on files one `test_<stem>`
per test file. The first `eval.num_questions` of each are rolled out
greedily in batches of `eval.batch_size` with the shared sampler and, when
`eval.samples` = k > 0, k more times at the rollout temperature (each
sample its own key): `<split>_em_sampled` is the mean EM over the k x n
sampled answers (the "k-sample EM"), a lower-variance estimate of the
policy the RL stage trains than the greedy one.
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
  """`{<split>_em, <split>_searches}` of the greedy policy `params`, and
  `<split>_em_sampled` when `eval.samples` > 0."""
  bs = ctx.config.eval.batch_size
  samples = ctx.config.eval.samples
  key = eval_key(ctx)
  out = {}
  for name, qs in splits(ctx).items():
    ems, searches, sampled = [], [], []
    for start in range(0, len(qs), bs):
      chunk = qs[start : start + bs]
      ro = ctx.rollout(params, chunk, key, temperature=0.0)
      ems += context_lib.success(ro.texts, chunk).tolist()
      searches += ro.num_searches.tolist()
      for i in range(samples):
        k = jax.random.fold_in(key, start * samples + i + 1)
        ro = ctx.rollout(params, chunk, k)
        sampled += context_lib.success(ro.texts, chunk).tolist()
    out[f'{name}_em'] = float(np.mean(ems))
    out[f'{name}_searches'] = float(np.mean(searches))
    if samples:
      out[f'{name}_em_sampled'] = float(np.mean(sampled))
  return out
