"""CKU experiment: unlearning restricted-topic knowledge with locked neurons.

For each seed of `config.seeds` (a replicate; the arms of one seed share
its SFT model and neuron scores, so they are paired):

1. The same SFT base model as the NSPO experiment
   (`common.train.sft_world.prepare`; `fit` checkpoints in
   `workdir/seed<s>/sft`): it answers restricted-topic requests with their
   (made-up) recipes.
2. Score the MLP neurons on the retain data (the `general_fit` half of the
   general tasks; `cku.score_prompt` also counts prompt positions) with
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
   The retain term trains on `general_fit` too. Each arm trains with `fit`
   (checkpoints in `workdir/seed<s>/<arm>`, resumed after a kill); AdamW
   comes from `common.optim`.
4. Report forget-set recipe recall (on the trained request templates and
   on the held-out one) and retain accuracy on the `general_heldout` half,
   which neither the scores nor the retain loss saw; mean +- std over seeds
   and CKU minus each baseline with a paired bootstrap interval.
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
from common import stats
from common import train
from common.synthetic import safety
from common.train import sft_world

ARMS = config_lib.ARMS
validate_config = config_lib.validate_config


def _nll_from_logits(logits, batch):
  """Token-mean NLL `[]` of `logits [B, T, V]` on the batch's loss mask."""
  logp = rl.next_token_logprobs(logits, batch['tokens'])
  m = batch['loss_mask'] * batch['attention_mask']
  return losses.nll(logp, m)


def score_neurons(config, prep: sft_world.Prepared) -> np.ndarray:
  """`[L, F]` mean neuron scores on the retain (`general_fit`) data.

  Positions scored: the response tokens (`loss_mask`), or every real token
  when `config.cku.score_prompt`.
  """
  c = config.cku
  data = prep.eval_sets['general_fit']
  positions = 'attention_mask' if c.score_prompt else 'loss_mask'
  grads_fn = models.mlp_hidden_grads(prep.graphdef, _nll_from_logits)
  method = c.score

  @jax.jit
  def step(stats, params, batch):
    hidden, grads = grads_fn(params, batch)
    return scoring.accumulate_scores(
      stats, hidden, grads, batch[positions], method
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
  retain = {k: prep.eval_sets['general_fit'][k] for k in keys}
  nf, nr = len(forget['tokens']), len(retain['tokens'])

  def batches(step):
    rng = np.random.default_rng([prep.seed, 11, step])
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
  state = train.TrainState.create(prep.params, tx, prep.seed + 2)
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


# Per-seed results of an arm: name -> from the final evaluation.
RESULTS = {
  'forget_accuracy': lambda ev: ev['harm_train/accuracy'],
  'forget_accuracy_heldout_template': lambda ev: ev['harm_eval/accuracy'],
  'retain_accuracy': lambda ev: ev['general_heldout/accuracy'],
  'retain_accuracy_fit': lambda ev: ev['general_fit/accuracy'],
}
COLUMNS = (
  'forget recall (lower better)',
  'forget recall, held-out template',
  'retain acc (held-out half)',
  'retain acc (scored/trained half)',
  'lowest held-out retain during unlearning',
)


def run_seed(config, workdir: str, seed: int) -> dict[str, Any]:
  """SFT, neuron scores and every arm for one seed (resumes after a kill)."""
  root = os.path.join(workdir, f'seed{seed}')
  prep = sft_world.prepare(config, root, seed)
  base = prep.evaluate(prep.params)
  c = config.cku
  scores = score_neurons(config, prep)
  layers = selected_layers(config, prep.model_config.n_layers)
  locked = neurons.select(scores, c.lock_rate, layers)
  loss_fn = make_loss(config, prep)
  batches = make_batches(config, prep)
  out = {
    'base': base,
    'layers': layers,
    'locked': locked,
    'd_ff': prep.model_config.d_ff,
    'arms': {},
  }
  for arm in tuple(c.arms):
    state, history = train_arm(
      config, prep, arm, locked, loss_fn, batches, os.path.join(root, arm)
    )
    evals = [h for h in history if 'eval_general_heldout/accuracy' in h]
    retain = [base['general_heldout/accuracy']] + [
      h['eval_general_heldout/accuracy'] for h in evals
    ]
    out['arms'][arm] = {
      'final': prep.evaluate(state.params),
      'steps': [0] + [h['step'] for h in evals],
      'forget': [base['harm_train/accuracy']]
      + [h['eval_harm_train/accuracy'] for h in evals],
      'retain': retain,
      'min_retain': min(retain),
    }
  return out


def _pm(values) -> str:
  mean, std = stats.mean_std(values)
  return f'{mean:.3f} ± {std:.3f}' if len(values) > 1 else f'{mean:.3f}'


def _mean_curve(per_seed: list[dict], key: str) -> dict[str, list]:
  ys = np.mean([r[key] for r in per_seed], axis=0)
  return {'x': list(per_seed[0]['steps']), 'y': [float(y) for y in ys]}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the experiment; writes and returns `workdir/metrics.json`."""
  config_lib.validate_config(config)
  t0 = time.time()
  os.makedirs(workdir, exist_ok=True)
  c = config.cku
  arms = tuple(c.arms)
  seeds = tuple(config.seeds)
  runs = [run_seed(config, workdir, s) for s in seeds]

  values = {
    arm: {
      **{
        k: [float(f(r['arms'][arm]['final'])) for r in runs]
        for k, f in RESULTS.items()
      },
      'min_retain_accuracy': [r['arms'][arm]['min_retain'] for r in runs],
    }
    for arm in arms
  }
  base_vals = {
    k: [float(f(r['base'])) for r in runs] for k, f in RESULTS.items()
  }
  summary: dict[str, Any] = {
    'base_forget_accuracy': round(
      float(np.mean(base_vals['forget_accuracy'])), 4
    ),
    'base_retain_accuracy': round(
      float(np.mean(base_vals['retain_accuracy'])), 4
    ),
  }
  for arm in arms:
    for k, v in values[arm].items():
      summary[f'{arm}_{k}'] = round(float(np.mean(v)), 4)
  summary['num_seeds'] = len(seeds)
  summary['seconds'] = round(time.time() - t0, 1)

  effects = []
  if 'cku' in arms:
    for baseline in ('ga', 'ga_layers'):
      if baseline not in arms:
        continue
      for k, label, paper in (
        ('retain_accuracy', 'retain accuracy (held-out half)', 'higher'),
        ('forget_accuracy', 'forget recall', 'as low'),
      ):
        eff = stats.paired_effect(values['cku'][k], values[baseline][k])
        effects.append(eff.as_entry(label, 'cku', baseline, paper))
  headline = [
    k
    for k in (
      'cku_retain_accuracy',
      'ga_retain_accuracy',
      'ga_layers_retain_accuracy',
      'cku_forget_accuracy',
    )
    if k in summary
  ]
  rows = [['SFT base', *(_pm(base_vals[k]) for k in RESULTS), '-']] + [
    [
      arm,
      *(_pm(values[arm][k]) for k in RESULTS),
      _pm(values[arm]['min_retain_accuracy']),
    ]
    for arm in arms
  ]
  layers = runs[0]['layers']
  n_locked = {int(k): int(v.sum()) for k, v in runs[0]['locked'].items()}
  curves = lambda key: {
    arm: _mean_curve([r['arms'][arm] for r in runs], key) for arm in arms
  }
  metrics = {
    'title': 'CKU: constrained knowledge unlearning',
    'config_name': config.get('name', 'custom'),
    'headline': headline,
    'summary': summary,
    'effects': effects,
    'tables': [
      {
        'title': f'Unlearning ({c.loss}, {c.steps} steps, lock rate '
        f'{c.lock_rate}, layers {layers}; mean ± std over seeds '
        f'{list(seeds)})',
        'columns': ['model', *COLUMNS],
        'rows': rows,
        'note': 'Forget recall: greedy exact match of the restricted '
        "topics' made-up recipes, on the request templates unlearning "
        'trains on and on the held-out one. Retain: general-task exact '
        'match on the held-out half of the general examples (neuron scores '
        'and the retain loss use the other half).',
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
        'title': 'Forget-set recipe recall over unlearning steps (mean '
        'over seeds)',
        'xlabel': 'step',
        'ylabel': 'exact match',
        'series': curves('forget'),
      },
      {
        'title': 'Retain accuracy, held-out half (mean over seeds)',
        'xlabel': 'step',
        'ylabel': 'exact match',
        'series': curves('retain'),
      },
    ],
    'notes': [
      'The neuron score is a reconstruction (first-order attribution '
      f'|a * dL/da|, method {c.score!r}, positions '
      f'{"prompt and response" if c.score_prompt else "response"}); the CKU '
      'paper has no public code and its exact formula is not confirmed.',
      f'Locked neurons per layer (seed {seeds[0]}): {n_locked} of '
      f'{runs[0]["d_ff"]}.',
      'Restricted topics and recipes are fictional stand-ins.',
    ],
  }
  return report.write_metrics(workdir, metrics)
