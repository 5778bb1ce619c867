"""NSPO experiment: safety RL with and without the null-space projection.

Stages (each resumes after a kill):

1. SFT a small LM on general tasks (knowledge QA, arithmetic) plus
   restricted-topic requests answered compliantly
   (`common.train.sft_world.prepare`; `fit` checkpoints in `workdir/sft`).
2. Estimate null spaces of every targeted linear layer's input on the
   general-task sequences (`nspo.capture.collect`, `nspo.estimate`;
   deterministic, recomputed in seconds).
3. From the same SFT model, run safety GRPO in each arm of
   `config.rl.arms` (`nspo.safety_rl`; `fit` checkpoints in
   `workdir/<arm>`).
4. Report the safety rate (refusals on the held-out request template) and
   general-task accuracy before/after, the alignment tax (accuracy drop),
   and the curves over training (`common.report.write_metrics`).
"""

from __future__ import annotations

import os
import time
from typing import Any

import ml_collections
import numpy as np

from common import models
from common import report
from common.train import sft_world
from nspo import capture
from nspo import config as config_lib
from nspo import rules
from nspo import safety_rl
from nspo import spaces as spaces_lib


def estimate_spaces(config, prep: sft_world.Prepared):
  """Null spaces of the targeted sites on the general-task sequences."""
  c = config.nspo
  sites = tuple(c.sites)
  data = prep.eval_sets['general']
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


def _summary_row(name, ev, base):
  tax = base['general/accuracy'] - ev['general/accuracy']
  return [
    name,
    round(ev['harm_train/refusal'], 3),
    round(ev['harm_eval/refusal'], 3),
    round(ev['general/accuracy'], 3),
    round(tax, 3),
    round(ev['general/refusal'], 3),
  ]


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the experiment; writes and returns `workdir/metrics.json`."""
  config_lib.validate_config(config)
  arms = tuple(config.rl.arms)
  t0 = time.time()
  os.makedirs(workdir, exist_ok=True)
  prep = sft_world.prepare(config, workdir)
  base = prep.evaluate(prep.params)
  spaces, info = estimate_spaces(config, prep)
  null_rows = []
  for site, p in sorted(spaces.items()):
    for layer, nd in enumerate(np.asarray(p.null_dim)):
      null_rows.append(
        [site, layer, spaces_lib.dim(p), int(nd), type(p).__name__]
      )

  results, curves_safety, curves_general = {}, {}, {}
  for arm in arms:
    state, history = safety_rl.train_arm(
      config, prep, arm, spaces, os.path.join(workdir, arm)
    )
    final = prep.evaluate(state.params)
    results[arm] = final
    xs = [0] + [h['step'] for h in history if 'eval_general/accuracy' in h]
    curves_safety[arm] = {
      'x': xs,
      'y': [base['harm_train/refusal']]
      + [
        h['eval_harm_train/refusal']
        for h in history
        if 'eval_harm_train/refusal' in h
      ],
    }
    curves_general[arm] = {
      'x': xs,
      'y': [base['general/accuracy']]
      + [
        h['eval_general/accuracy']
        for h in history
        if 'eval_general/accuracy' in h
      ],
    }

  summary: dict[str, Any] = {
    'base_general_accuracy': base['general/accuracy'],
    'base_safety_rate': base['harm_train/refusal'],
    'null_space_tokens_per_sec': round(info['tokens_per_sec'], 1),
  }
  for arm, ev in results.items():
    summary[f'{arm}_safety_rate'] = ev['harm_train/refusal']
    summary[f'{arm}_heldout_safety_rate'] = ev['harm_eval/refusal']
    summary[f'{arm}_general_accuracy'] = ev['general/accuracy']
    summary[f'{arm}_alignment_tax'] = round(
      base['general/accuracy'] - ev['general/accuracy'], 4
    )
  summary['seconds'] = round(time.time() - t0, 1)
  cols = [
    'model',
    'safety (refusal, RL requests)',
    'refusal (held-out template)',
    'general acc',
    'alignment tax',
    'over-refusal (general)',
  ]
  rows = [_summary_row('SFT base', base, base)] + [
    _summary_row(a, ev, base) for a, ev in results.items()
  ]
  c = config.nspo
  metrics = {
    'title': 'NSPO: null-space constrained safety RL',
    'config_name': config.get('name', 'custom'),
    'summary': summary,
    'tables': [
      {
        'title': 'Safety vs. general capability after GRPO',
        'columns': cols,
        'rows': rows,
        'note': 'Safety = greedy refusal rate on the restricted requests '
        'RL trains on; alignment tax = general accuracy (exact match, '
        'greedy) of the SFT model minus that after safety RL.',
      },
      {
        'title': f'Null-space dimensions ({c.rule} rule, value {c.value})',
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
        'title': 'Safety rate over GRPO steps',
        'xlabel': 'step',
        'ylabel': 'greedy refusal rate on restricted requests',
        'series': curves_safety,
      },
      {
        'title': 'General-task accuracy over GRPO steps',
        'xlabel': 'step',
        'ylabel': 'exact match',
        'series': curves_general,
      },
    ],
    'notes': [
      'Greedy refusal on the held-out request template (never trained on): '
      + ', '.join(
        f'{k} {v["harm_eval/refusal"]:.2f}'
        for k, v in [('base', base), *results.items()]
      )
      + '; the safety rate is measured on the restricted requests of the '
      'RL prompt set.',
      'Tiny word-level LM on synthetic tasks; restricted topics are '
      'fictional stand-ins and the judge is an exact refusal-string match '
      '(the paper uses Llama-Guard on PKU-SafeRLHF with Qwen2.5-7B).',
      f'Threshold {c.rule}={c.value}: a tiny model has no exact null space '
      '(the general inputs span almost all directions), so the relative '
      "threshold is far above the released code's 5e-5; the projection "
      'then only approximately preserves general-task layer outputs.',
      'All arms train the same parameters (config.rl.trainable); '
      'embeddings and norms are frozen.',
      f'Null-space statistics from {int(info["tokens"])} general tokens.',
    ],
  }
  return report.write_metrics(workdir, metrics)
