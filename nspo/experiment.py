"""NSPO experiment: safety RL with and without the null-space projection.

For each seed of `config.seeds` (a replicate: its own model init, SFT order
and RL sampling; the arms of one seed share its SFT model, so they are
paired), stages that each resume after a kill:

1. SFT a small LM on general tasks (knowledge QA, arithmetic) plus
   restricted-topic requests answered compliantly
   (`common.train.sft_world.prepare`; `fit` checkpoints in
   `workdir/seed<s>/sft`).
2. Estimate null spaces of every targeted linear layer's input on the
   `general_fit` half of the general examples (`nspo.capture.collect`,
   `nspo.estimate`; deterministic, recomputed in seconds).
3. From the SFT model, run safety GRPO in each arm of `config.rl.arms`
   (`nspo.safety_rl`; checkpoints in `workdir/seed<s>/<arm>`).

The report gives, per arm, mean +- std over seeds of the safety rate, the
refusal of the held-out request template, and the alignment tax (general
accuracy lost) on both halves: `fit` (where the null space was estimated)
and `heldout` (never seen by the estimate: the honest number); and each
NSPO arm minus plain GRPO with a paired bootstrap interval
(`common.stats.paired_effect`).
"""

from __future__ import annotations

import os
import time
from typing import Any

import ml_collections
import numpy as np

from common import models
from common import report
from common import stats
from common.train import sft_world
from nspo import capture
from nspo import config as config_lib
from nspo import rules
from nspo import safety_rl
from nspo import spaces as spaces_lib

validate_config = config_lib.validate_config


def estimate_spaces(config, prep: sft_world.Prepared):
  """Null spaces of the targeted sites on the `general_fit` sequences."""
  c = config.nspo
  sites = tuple(c.sites)
  data = prep.eval_sets['general_fit']
  n = data['tokens'].shape[0]
  bs = c.batch_size
  batches = [
    (data['tokens'][i : i + bs], data['attention_mask'][i : i + bs])
    for i in range(0, n, bs)
  ]
  stats, info = capture.collect(
    models.capture_fn(prep.graphdef, sites),
    prep.params,
    batches,
    capture.site_dims(prep.model_config, sites),
  )
  rule = rules.Threshold(c.rule, c.value)
  spaces = spaces_lib.estimate(
    stats, rule, c.representation, allow_frozen=c.allow_frozen
  )
  return spaces, info


# Per-seed results of an arm: name -> (metric label, from (ev, base)).
RESULTS = {
  'safety_rate': lambda ev, base: ev['harm_train/refusal'],
  'heldout_safety_rate': lambda ev, base: ev['harm_eval/refusal'],
  'general_accuracy': lambda ev, base: ev['general_heldout/accuracy'],
  'alignment_tax': lambda ev, base: (
    base['general_heldout/accuracy'] - ev['general_heldout/accuracy']
  ),
  'alignment_tax_fit': lambda ev, base: (
    base['general_fit/accuracy'] - ev['general_fit/accuracy']
  ),
  'over_refusal': lambda ev, base: ev['general/refusal'],
}
COLUMNS = {
  'safety_rate': 'safety (refusal, RL requests)',
  'heldout_safety_rate': 'refusal (held-out template)',
  'general_accuracy': 'general acc (held-out half)',
  'alignment_tax': 'tax (held-out half)',
  'alignment_tax_fit': 'tax (estimation half)',
  'over_refusal': 'over-refusal (general)',
}


def run_seed(config, workdir: str, seed: int) -> dict[str, Any]:
  """SFT, null spaces and every arm for one seed (resumes after a kill)."""
  prep = sft_world.prepare(config, os.path.join(workdir, f'seed{seed}'), seed)
  base = prep.evaluate(prep.params)
  spaces, info = estimate_spaces(config, prep)
  out = {'base': base, 'info': info, 'spaces': spaces, 'arms': {}}
  for arm in config.rl.arms:
    state, history = safety_rl.train_arm(
      config, prep, arm, spaces, os.path.join(workdir, f'seed{seed}', arm)
    )
    evals = [h for h in history if 'eval_general/accuracy' in h]
    out['arms'][arm] = {
      'final': prep.evaluate(state.params),
      'steps': [0] + [h['step'] for h in evals],
      'safety': [base['harm_train/refusal']]
      + [h['eval_harm_train/refusal'] for h in evals],
      'general': [base['general_heldout/accuracy']]
      + [h['eval_general_heldout/accuracy'] for h in evals],
    }
  return out


def _pm(values) -> str:
  mean, std = stats.mean_std(values)
  return f'{mean:.3f} ± {std:.3f}' if len(values) > 1 else f'{mean:.3f}'


def _mean_curve(per_seed: list[dict], key: str) -> dict[str, list]:
  xs = per_seed[0]['steps']
  ys = np.mean([r[key] for r in per_seed], axis=0)
  return {'x': list(xs), 'y': [float(y) for y in ys]}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the experiment; writes and returns `workdir/metrics.json`."""
  config_lib.validate_config(config)
  arms = tuple(config.rl.arms)
  seeds = tuple(config.seeds)
  t0 = time.time()
  os.makedirs(workdir, exist_ok=True)
  runs = [run_seed(config, workdir, s) for s in seeds]

  # values[arm][result] = [per seed]
  values = {
    arm: {
      k: [float(f(r['arms'][arm]['final'], r['base'])) for r in runs]
      for k, f in RESULTS.items()
    }
    for arm in arms
  }
  base_acc = [r['base']['general_heldout/accuracy'] for r in runs]
  base_safety = [r['base']['harm_train/refusal'] for r in runs]
  summary: dict[str, Any] = {
    'base_general_accuracy': round(float(np.mean(base_acc)), 4),
    'base_safety_rate': round(float(np.mean(base_safety)), 4),
  }
  for arm in arms:
    for k, v in values[arm].items():
      summary[f'{arm}_{k}'] = round(float(np.mean(v)), 4)
  summary['num_seeds'] = len(seeds)
  summary['seconds'] = round(time.time() - t0, 1)

  effects = []
  for arm in arms:
    base_arm = 'grpo_mixed' if arm.endswith('_mixed') else 'grpo'
    if safety_rl.base_arm(arm) == 'grpo' or base_arm not in arms:
      continue
    for k, label, paper in (
      ('alignment_tax', 'alignment tax (held-out half)', 'tax ~ 0'),
      ('safety_rate', 'safety rate', 'safety up as GRPO'),
      ('heldout_safety_rate', 'refusal, held-out template', 'safety up'),
    ):
      eff = stats.paired_effect(values[arm][k], values[base_arm][k])
      effects.append(eff.as_entry(label, arm, base_arm, paper))
  headline = [
    k
    for k in (
      'nspo_alignment_tax',
      'grpo_alignment_tax',
      'nspo_safety_rate',
      'grpo_safety_rate',
    )
    if k in summary
  ]

  rows = [
    [
      'SFT base',
      _pm(base_safety),
      _pm([r['base']['harm_eval/refusal'] for r in runs]),
      _pm(base_acc),
      '0',
      '0',
      _pm([r['base']['general/refusal'] for r in runs]),
    ]
  ] + [[arm] + [_pm(values[arm][k]) for k in RESULTS] for arm in arms]
  spaces0 = runs[0]['spaces']
  null_rows = [
    [site, layer, spaces_lib.dim(p), int(nd), type(p).__name__]
    for site, p in sorted(spaces0.items())
    for layer, nd in enumerate(np.asarray(p.null_dim))
  ]
  c = config.nspo
  r = config.rl
  per_arm = lambda key: {
    arm: _mean_curve([run['arms'][arm] for run in runs], key) for arm in arms
  }
  n_fit = int(runs[0]['info']['tokens'])
  metrics = {
    'title': 'NSPO: null-space constrained safety RL',
    'config_name': config.get('name', 'custom'),
    'headline': headline,
    'summary': summary,
    'effects': effects,
    'tables': [
      {
        'title': f'Safety vs. general capability after GRPO (mean ± std '
        f'over seeds {list(seeds)})',
        'columns': ['model', *COLUMNS.values()],
        'rows': rows,
        'note': 'Safety = greedy refusal rate on the restricted requests '
        'RL trains on. Alignment tax = general accuracy (exact match, '
        'greedy) of the SFT model minus that after safety RL, on the '
        'held-out half of the general examples (the null space is '
        'estimated on the other half, shown as "estimation half").',
      },
      {
        'title': f'Null-space dimensions, seed {seeds[0]} ({c.rule} rule, '
        f'value {c.value})',
        'columns': ['site', 'layer', 'd_in', 'null dim', 'representation'],
        'rows': null_rows,
      },
      {
        'title': "Paper's reported numbers (Llama3-8B-Instruct, ASR %, "
        'third-party summary)',
        'columns': ['method', 'AdvBench', 'HarmBench', 'SORRY', 'ALERT'],
        'rows': [
          ['Base', 1.36, 7.50, 34.15, 3.81],
          ['NSPO', 0.06, 0.18, 16.81, 1.00],
        ],
        'note': 'Utility reported as ~no loss vs. base on MATH, HumanEval, '
        'IFEval, MMLU; not comparable in scale with this run.',
      },
    ],
    'curves': [
      {
        'title': 'Safety rate over GRPO steps (mean over seeds)',
        'xlabel': 'step',
        'ylabel': 'greedy refusal rate on restricted requests',
        'series': per_arm('safety'),
      },
      {
        'title': 'General accuracy, held-out half (mean over seeds)',
        'xlabel': 'step',
        'ylabel': 'exact match',
        'series': per_arm('general'),
      },
    ],
    'notes': [
      f'RL prompts: a share {r.harmful_fraction} of restricted requests '
      "(1.0 = safety prompts only, the paper's setting); `_mixed` arms use "
      f'{r.mixed_harmful_fraction}, with a -1 reward for refusing a benign '
      'prompt (benign prompts come from the estimation half only).',
      'Tiny word-level LM on synthetic tasks; restricted topics are '
      'fictional stand-ins and the judge is an exact refusal-string match '
      '(the paper uses Llama-Guard on PKU-SafeRLHF with Qwen2.5-7B).',
      f'Threshold {c.rule}={c.value} at sites {tuple(c.sites)}: a tiny '
      'model has no exact null space (the general inputs span almost all '
      'directions), so the relative threshold is far above the released '
      "code's 5e-5 (MLP inputs only; the `paper` config); the projection "
      'then only approximately preserves general-task layer outputs.',
      'All arms train the same parameters (config.rl.trainable); '
      'embeddings and norms are frozen.',
      f'Null-space statistics from {n_fit} general tokens per seed.',
    ],
  }
  return report.write_metrics(workdir, metrics)
