"""CKU experiment: unlearning restricted-topic knowledge with locked neurons.

1. The same SFT base model as the NSPO experiment
   (`common.train.sft_world.prepare`; `fit` checkpoints in `workdir/sft`):
   it answers restricted-topic requests with their (made-up) recipes.
2. Score the MLP neurons on retain data (general tasks) with
   `cku.accumulate_scores`, from one forward/backward pass per batch
   through the model's `mlp_hidden_delta` input; lock the top `lock_rate`
   fraction per selected layer (`cku.select`).
3. Unlearn the recipes (forget set: restricted requests with their
   recipes) with gradient ascent or NPO plus a retain NLL term, in arms:
   * `ga`: all parameters train (plain gradient ascent baseline);
   * `ga_layers`: only the selected layers' MLP neurons train, none locked
     (ablation: layer restriction without knowledge-retention locking);
   * `cku`: the selected layers' MLP neurons train except the locked ones
     (`optax.chain(adamw, cku.mask(locked, train_only_selected=True))`).
   Each arm trains with `fit` (checkpoints in `workdir/<arm>`, resumed after
   a kill); AdamW comes from `common.optim`.
4. Report forget-set recipe recall and retain (general) accuracy.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from cku import config as config_lib
from cku import losses
from cku import masking
from cku import neurons
from cku import scoring
from common import models
from common import optim
from common import report
from common import rl
from common import train
from common.synthetic import safety
from common.train import sft_world

ARMS = config_lib.ARMS


def _nll_from_logits(logits, batch):
  """Token-mean NLL `[]` of `logits [B, T, V]` on the batch's loss mask."""
  logp = rl.next_token_logprobs(logits, batch['tokens'])
  m = batch['loss_mask'] * batch['attention_mask']
  return losses.nll(logp, m)


def score_neurons(config, prep: sft_world.Prepared) -> np.ndarray:
  """`[L, F]` mean neuron scores on the retain (general) data."""
  c = config.cku
  data = prep.eval_sets['general']
  grads_fn = models.mlp_hidden_grads(prep.graphdef, _nll_from_logits)
  method = c.score

  @jax.jit
  def step(stats, params, batch):
    hidden, grads = grads_fn(params, batch)
    return scoring.accumulate_scores(
      stats, hidden, grads, batch['loss_mask'], method
    )

  cfg = prep.model_config
  stats = scoring.init_scores(cfg.n_layers, cfg.d_ff)
  n, bs = len(data['tokens']), c.score_batch_size
  for i in range(0, n, bs):
    batch = {
      k: data[k][i : i + bs] for k in ('tokens', 'attention_mask', 'loss_mask')
    }
    stats = step(stats, prep.params, batch)
  return scoring.mean_scores(stats)


def selected_layers(config, num_layers: int) -> list[int]:
  layers = list(config.cku.layers)
  if not layers:
    return neurons.depth_scaled_layers(num_layers)
  return layers


def make_optimizer(config, arm: str, locked, params):
  """AdamW (`common.optim`), then the arm's neuron mask (none for `ga`)."""
  del params  # the masks are resolved against the tree at tx.init
  c = config.cku
  adamw = optim.make_optimizer(
    {
      'name': 'adamw',
      'learning_rate': c.learning_rate,
      'weight_decay': c.weight_decay,
      'weight_decay_mask': 'all',
    }
  )
  if arm == 'ga':
    return adamw
  if arm == 'ga_layers':
    none = {k: np.zeros_like(v) for k, v in locked.items()}
    return optax.chain(adamw, masking.mask(none, train_only_selected=True))
  if arm == 'cku':
    return optax.chain(adamw, masking.mask(locked, train_only_selected=True))
  raise ValueError(f'unknown arm {arm!r}; allowed: {ARMS}.')


def make_loss(config, prep: sft_world.Prepared):
  c = config.cku

  def loss_fn(params, batch, rng):
    del rng
    f_logp = models.token_logprobs(prep.graphdef, params, batch['forget'])
    r_logp = models.token_logprobs(prep.graphdef, params, batch['retain'])
    fm = batch['forget']['loss_mask'] * batch['forget']['attention_mask']
    rm = batch['retain']['loss_mask'] * batch['retain']['attention_mask']
    return losses.unlearning_loss(
      f_logp,
      fm,
      r_logp,
      rm,
      method=c.loss,
      retain_weight=c.retain_weight,
      ref_forget_logp=batch['forget'].get('ref_logp'),
      beta=c.npo_beta,
    )

  return loss_fn


def make_batches(config, prep: sft_world.Prepared):
  c = config.cku
  forget = safety.encode(
    prep.task, prep.task.harmful_train, prep.prompt_len, prep.response_len
  )
  keys = ('tokens', 'attention_mask', 'loss_mask')
  forget = {k: forget[k] for k in keys}
  forget['loss_mask'] = forget['loss_mask'].astype(np.float32)
  ref = jax.jit(lambda p, b: models.token_logprobs(prep.graphdef, p, b))(
    prep.params, forget
  )
  forget['ref_logp'] = np.asarray(ref)
  retain = {k: prep.eval_sets['general'][k] for k in keys}
  nf, nr = len(forget['tokens']), len(retain['tokens'])

  def batches(step):
    rng = np.random.default_rng([config.seed, 11, step])
    bf, br = c.forget_batch_size, c.retain_batch_size
    i_f = rng.choice(nf, bf, replace=bf > nf)
    i_r = rng.choice(nr, br, replace=br > nr)
    return {
      'forget': {k: v[i_f] for k, v in forget.items()},
      'retain': {k: v[i_r] for k, v in retain.items()},
    }

  return batches


def train_arm(config, prep, arm, locked, loss_fn, batches, workdir):
  """Runs (or resumes, from `workdir`'s latest checkpoint) one arm."""
  c = config.cku
  tx = make_optimizer(config, arm, locked, prep.params)
  state = train.TrainState.create(prep.params, tx, config.seed + 2)
  return train.fit(
    state,
    train.make_train_step(loss_fn, tx, has_aux=True),
    batches,
    num_steps=c.steps,
    workdir=workdir,
    checkpoint_every=c.get('checkpoint_every', 0) or None,
    log_every=c.eval_every,
    eval_fn=lambda s: prep.evaluate(s.params),
    eval_every=c.eval_every,
    progress=False,
  )


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the experiment; writes and returns `workdir/metrics.json`."""
  config_lib.validate_config(config)
  t0 = time.time()
  os.makedirs(workdir, exist_ok=True)
  prep = sft_world.prepare(config, workdir)
  base = prep.evaluate(prep.params)
  c = config.cku
  scores = score_neurons(config, prep)
  layers = selected_layers(config, prep.model_config.n_layers)
  locked = neurons.select(scores, c.lock_rate, layers)
  loss_fn = make_loss(config, prep)
  batches = make_batches(config, prep)

  results: dict[str, dict[str, float]] = {}
  forget_curves: dict[str, Any] = {}
  retain_curves: dict[str, Any] = {}
  min_retain: dict[str, float] = {}
  for arm in tuple(c.arms):
    state, history = train_arm(
      config, prep, arm, locked, loss_fn, batches, os.path.join(workdir, arm)
    )
    results[arm] = prep.evaluate(state.params)
    evals = [h for h in history if 'eval_general/accuracy' in h]
    min_retain[arm] = min(
      [base['general/accuracy']] + [h['eval_general/accuracy'] for h in evals]
    )
    xs = [0] + [h['step'] for h in evals]
    forget_curves[arm] = {
      'x': xs,
      'y': [base['harm_train/accuracy']]
      + [h['eval_harm_train/accuracy'] for h in evals],
    }
    retain_curves[arm] = {
      'x': xs,
      'y': [base['general/accuracy']]
      + [h['eval_general/accuracy'] for h in evals],
    }

  summary: dict[str, Any] = {
    'base_forget_accuracy': base['harm_train/accuracy'],
    'base_retain_accuracy': base['general/accuracy'],
  }
  for arm, ev in results.items():
    summary[f'{arm}_forget_accuracy'] = ev['harm_train/accuracy']
    summary[f'{arm}_retain_accuracy'] = ev['general/accuracy']
    summary[f'{arm}_min_retain_accuracy'] = min_retain[arm]
  summary['seconds'] = round(time.time() - t0, 1)
  rows = [
    [
      name,
      round(ev['harm_train/accuracy'], 3),
      round(ev['general/accuracy'], 3),
      round(min_retain.get(name, base['general/accuracy']), 3),
      round(ev['harm_train/refusal'], 3),
    ]
    for name, ev in [('SFT base', base), *results.items()]
  ]
  n_locked = {int(k): int(v.sum()) for k, v in locked.items()}
  metrics = {
    'title': 'CKU: constrained knowledge unlearning',
    'config_name': config.get('name', 'custom'),
    'summary': summary,
    'tables': [
      {
        'title': f'Unlearning ({c.loss}, {c.steps} steps, lock rate '
        f'{c.lock_rate}, layers {layers})',
        'columns': [
          'model',
          'forget recall (lower better)',
          'retain accuracy',
          'lowest retain accuracy during unlearning',
          'refusal on forget prompts',
        ],
        'rows': rows,
        'note': 'Forget recall: greedy exact match of the restricted '
        "topics' made-up recipes; retain: general-task exact match.",
      },
      {
        'title': "Paper's reported numbers (Llama2-7B-Chat, summary)",
        'columns': ['metric', 'value'],
        'rows': [
          ['AdvBench ASR', 0.0],
          ['AutoDAN ASR', 5.96],
          ['XSTest false refusal', 5.11],
          ['MT-Bench', 7.96],
        ],
        'note': 'From a third-party benchmark index; not comparable in '
        'scale with this run.',
      },
    ],
    'curves': [
      {
        'title': 'Forget-set recipe recall over unlearning steps',
        'xlabel': 'step',
        'ylabel': 'exact match',
        'series': forget_curves,
      },
      {
        'title': 'Retain (general) accuracy over unlearning steps',
        'xlabel': 'step',
        'ylabel': 'exact match',
        'series': retain_curves,
      },
    ],
    'notes': [
      'The neuron score is a reconstruction (first-order attribution '
      f'|a * dL/da|, method {c.score!r}); the CKU paper has no public '
      'code and its exact formula is not confirmed.',
      f'Locked neurons per layer: {n_locked} of {prep.model_config.d_ff}.',
      'Restricted topics and recipes are fictional stand-ins.',
    ],
  }
  return report.write_metrics(workdir, metrics)
