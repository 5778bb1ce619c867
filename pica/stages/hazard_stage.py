"""Stage 2: the hazard (CRM) reward model, on `common.train.fit`.

G rollouts per sampled train question from the SFT policy are labelled by
`pica.pivots` (golden decompositions), placeholders are inserted after each
served `</search>` (`pica.hazard.insert_placeholders`), and a
`pica.hazard.HazardModel` whose backbone starts from the SFT policy is
trained with the CRM loss. With `hazard.eval_questions > 0`, rollouts of
as many further train questions (disjoint from the training ones) give a
held-out CRM loss, step accuracy and the ranking AUC of '-' vs '+' steps
(served searches and end steps separately, `pica.hazard.heldout_aucs`),
evaluated at the start, every `hazard.eval_every` steps and at the end;
with `hazard.patience` training stops early once the held-out search AUC
has not improved for that many evaluations.

The rollouts are a deterministic function of the SFT parameters and the
seed, so a resumed stage rebuilds the same data; batch `s` is a pure
function of `s`.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import numpy as np
from flax import nnx

from common import metrics as metrics_lib
from common import models
from common import train
from pica import hazard
from pica import pivots
from pica.stages import context as context_lib
from pica.stages import optimizer


def collect(
  ctx: context_lib.Context, policy_params, questions, key: jax.Array
) -> dict[str, np.ndarray]:
  """Labelled hazard inputs of rollouts of `questions` (batched).

  Returns:
    `{'tokens', 'mask', 'positions', 'valid', 'labels'}`, numpy arrays
    with one row per question (`insert_placeholders` +
    `pivots.label_arrays`).
  """
  c = ctx.config.hazard
  s = ctx.rollout_cfg.max_turns + 1
  batches = []
  bar = metrics_lib.progress_bar(
    len(questions), desc='pica hazard rollouts', unit='question'
  )
  for start in range(0, len(questions), c.rollout_batch):
    chunk = questions[start : start + c.rollout_batch]
    bar.update(len(chunk))
    ro = ctx.rollout(policy_params, chunk, jax.random.fold_in(key, start))
    ok = context_lib.success(ro.texts, chunk)
    anns = [
      pivots.annotate(q['decomposition'], bool(k), retrieved_ids=ids)
      for q, k, ids in zip(chunk, ok, ro.retrieved, strict=True)
    ]
    lab = pivots.label_arrays(anns, s)
    hi = ctx.hazard_inputs(ro)
    batches.append(
      {
        'tokens': hi.tokens,
        'mask': hi.mask,
        'positions': hi.positions,
        'valid': hi.valid & lab['valid'],
        'labels': lab['labels'],
      }
    )
  bar.close()
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


@functools.partial(jax.jit, static_argnums=0)
def _crm_eval(graphdef, params, batch, loss_kwargs):
  """Held-out CRM loss, step accuracy and hazards (loss weights traced)."""
  model = nnx.merge(graphdef, params)
  v = model.step_logits(batch['tokens'], batch['mask'], batch['positions'])
  loss, m = hazard.crm_loss(v, batch['labels'], batch['valid'], **loss_kwargs)
  return {
    'crm_loss': loss,
    'step_accuracy': m['step_accuracy'],
    'hazards': jax.nn.sigmoid(v),
  }


def heldout_metrics(h_graph, params, held, loss_kwargs) -> dict[str, float]:
  """CRM loss, step accuracy and '-' vs '+' ranking AUCs on `held`."""
  out = jax.device_get(_crm_eval(h_graph, params, held, loss_kwargs))
  aucs = hazard.heldout_aucs(out['hazards'], held['labels'], held['valid'])
  return {
    'crm_loss': float(out['crm_loss']),
    'step_accuracy': float(out['step_accuracy']),
    **aucs,
  }


def stopped_early(history, patience: int | None) -> bool:
  """True when the held-out search AUC has not improved for `patience` evals.

  Evaluations after step 0 only. NaN AUCs (a held-out set without both
  classes) never count as a best; a history without any finite AUC never
  stops.
  """
  if patience is None:
    return False
  # the step-0 evaluation (an untrained head) is not a candidate: training
  # runs at least `patience` evaluations
  aucs = np.array(
    [
      r['eval_search_auc']
      for r in history
      if 'eval_search_auc' in r and r['step'] > 0
    ]
  )
  finite = np.isfinite(aucs)
  if not finite.any():
    return False
  best = int(np.argmax(np.where(finite, aucs, -np.inf)))
  return len(aucs) - 1 - best >= patience


def _plan(ctx: context_lib.Context):
  """Training questions, held-out questions and each step's rows."""
  c = ctx.config.hazard
  n_train = len(ctx.train_qs)
  rng = np.random.default_rng([ctx.seed, 2])
  idx = rng.choice(n_train, c.num_questions, replace=False)
  n = c.num_questions * c.samples_per_question
  rows = [
    rng.choice(n, min(c.batch_size, n), replace=False) for _ in range(c.steps)
  ]
  rest = np.setdiff1d(np.arange(n_train), idx)
  held = np.random.default_rng([ctx.seed, 4]).choice(
    rest, c.eval_questions, replace=False
  )
  g = c.samples_per_question
  train_qs = [ctx.train_qs[i] for i in idx for _ in range(g)]
  eval_qs = [ctx.train_qs[i] for i in held for _ in range(g)]
  return train_qs, eval_qs, rows


def train_hazard(
  ctx: context_lib.Context,
  policy_params,
  workdir: str | os.PathLike,
  num_steps: int | None = None,
) -> tuple[nnx.GraphDef, Any, list[dict[str, Any]], dict[str, float]]:
  """Collects the rollouts and runs (or resumes) CRM training.

  Args:
    ctx: the run's context.
    policy_params: the SFT policy (samples the rollouts, initialises the
      backbone).
    workdir: the stage's folder (checkpoints, metrics.jsonl).
    num_steps: stop after this many steps (default and at most
      `hazard.steps`); a later call resumes from there.

  Returns:
    `(graphdef, params, history, stats)`: the hazard model, `fit`'s
    records (`loss` = CRM loss, `step_accuracy`, ..., and with held-out
    questions `eval_crm_loss`, `eval_step_accuracy`, `eval_search_auc`,
    `eval_end_auc`) and `{'trajectories', 'negative_fraction', 'steps'}`
    of the training rollouts, plus `heldout_search_auc`, `heldout_end_auc`
    (last evaluation) and `heldout_search_auc_start` with held-out
    questions.
  """
  c = ctx.config.hazard
  key = jax.random.fold_in(ctx.key, 1)
  train_qs, eval_qs, rows = _plan(ctx)
  data = collect(ctx, policy_params, train_qs, key)
  neg = np.asarray(hazard.is_negative(data['labels'], data['valid']))
  backbone = models.merge(ctx.graphdef, policy_params)
  hz = hazard.HazardModel(backbone, rngs=nnx.Rngs(ctx.seed + 7))
  h_graph, h_params = models.split(hz)
  loss_kwargs = {
    'neg_weight': c.neg_weight,
    'mono_weight': c.mono_weight,
    'margin': c.margin,
  }
  tx = optimizer.adam(c.learning_rate, c.warmup_steps)
  step_fn = train.make_train_step(
    hazard.make_hazard_loss(h_graph, **loss_kwargs), tx, has_aux=True
  )
  eval_fn = None
  if eval_qs:
    held = collect(ctx, policy_params, eval_qs, jax.random.fold_in(ctx.key, 3))

    def eval_fn(state):
      # an AUC is NaN when the held-out steps of a kind have one class
      # only; such entries are left out of the record
      out = heldout_metrics(h_graph, state.params, held, loss_kwargs)
      return {k: v for k, v in out.items() if np.isfinite(v)}

  state = train.TrainState.create(h_params, tx, rng=ctx.seed)
  total = context_lib.stage_steps(num_steps, c.steps, 'hazard')
  # With early stopping, train in chunks of eval_every steps (each chunk
  # resumes the last; a rerun resumes too) and stop when the held-out
  # search AUC has not improved for `patience` evaluations.
  chunk = total if c.patience is None else c.eval_every

  def run_to(n):
    return train.fit(
      state,
      step_fn,
      lambda s: {k: v[rows[s]] for k, v in data.items()},
      num_steps=n,
      workdir=workdir,
      mesh=ctx.mesh,
      checkpoint_every=c.checkpoint_every,
      log_every=c.log_every,
      eval_fn=eval_fn,
      eval_every=c.eval_every,
      eval_at_start=True,
      progress=False,
    )

  # A rerun first restores the latest checkpoint (training nothing): its
  # history says whether training had already stopped early.
  with train.Checkpointer(workdir) as ckpt:
    target = min(ckpt.latest_step() or 0, total)
  history = []
  if target:
    state, history = run_to(target)
  while target < total and not stopped_early(history, c.patience):
    target = min(total, target + chunk)
    state, history = run_to(target)
  stats = {
    'trajectories': len(data['tokens']),
    'negative_fraction': float(neg.mean()),
    'steps': target,
  }
  for kind in ('search', 'end'):
    held = [r[f'eval_{kind}_auc'] for r in history if f'eval_{kind}_auc' in r]
    if held:
      stats[f'heldout_{kind}_auc'] = held[-1]
      stats[f'heldout_{kind}_auc_start'] = held[0]
  return h_graph, state.params, history, stats
