"""The run's `metrics.json` content (schema: `common/report/README.md`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pica import config as config_lib

ARMS = config_lib.ARMS


def series(history, key: str) -> dict[str, list]:
  """`{'x': steps, 'y': values}` of the records in `history` with `key`."""
  pts = [r for r in history if key in r]
  return {'x': [r['step'] for r in pts], 'y': [r[key] for r in pts]}


def build(
  config,
  results: dict[str, dict[str, float]],
  histories: dict[str, list[dict[str, Any]]],
  sft_info: dict[str, int],
  hazard_stats: dict[str, float],
  seconds: float,
) -> dict[str, Any]:
  """The metrics dict of a run.

  Args:
    config: the resolved config.
    results: `{'sft' | arm: evaluate(...)}`.
    histories: `fit` records of `'sft'`, `'hazard'` and each arm.
    sft_info: `{'sft_examples', 'sft_dropped'}`.
    hazard_stats: `{'trajectories', 'negative_fraction'}`.
    seconds: wall time of the run.
  """
  splits = sorted(k[: -len('_em')] for k in results['sft'] if k.endswith('_em'))
  rows = []
  for s in splits:
    rows.append(
      [s]
      + [results[a][f'{s}_em'] for a in ('sft', *ARMS)]
      + [results[a][f'{s}_searches'] for a in ('sft', *ARMS)]
    )
  mean_em = {
    a: float(np.mean([results[a][f'{s}_em'] for s in splits])) for a in results
  }
  # relative EM gain of PiCA over outcome-only (0 when the baseline is 0)
  base = mean_em['outcome']
  rel = (mean_em['pica'] - base) / base if base > 0 else 0.0
  hz = histories['hazard']
  trained = [r for r in hz if 'step_accuracy' in r]
  summary = {
    'em_sft': mean_em['sft'],
    'em_outcome_only': mean_em['outcome'],
    'em_pica': mean_em['pica'],
    'pica_relative_gain': rel,
    'sft_examples': sft_info['sft_examples'],
    'hazard_trajectories': hazard_stats['trajectories'],
    'hazard_negative_fraction': hazard_stats['negative_fraction'],
    'hazard_final_step_accuracy': (
      trained[-1]['step_accuracy'] if trained else float('nan')
    ),
  }
  held = [r for r in hz if 'eval_crm_loss' in r]
  if held:
    summary['hazard_heldout_crm_loss_start'] = held[0]['eval_crm_loss']
    summary['hazard_heldout_crm_loss'] = held[-1]['eval_crm_loss']
    summary['hazard_heldout_step_accuracy'] = held[-1]['eval_step_accuracy']
  summary['seconds'] = seconds
  crm = {'train': series(hz, 'loss')}
  if held:
    crm['held-out'] = series(hz, 'eval_crm_loss')
  return {
    'title': 'PiCA: hazard step rewards vs outcome-only RL (knowledge world)',
    'config_name': config.name,
    'headline': [
      k
      for k in ('em_pica', 'em_outcome_only', 'em_sft', 'hazard_heldout_auc')
      if k in summary
    ],
    'summary': summary,
    'tables': [
      {
        'title': 'Greedy EM and searches per split',
        'columns': [
          'split',
          'EM SFT',
          'EM outcome-only',
          'EM PiCA',
          'searches SFT',
          'searches outcome-only',
          'searches PiCA',
        ],
        'rows': rows,
        'note': 'Paper (abstract): +15.2% relative EM over the strongest '
        'baseline at 3B, seven benchmarks; not comparable in scale.',
      }
    ],
    'curves': [
      {
        'title': 'RL training EM (sampled)',
        'xlabel': 'step',
        'ylabel': 'EM',
        'series': {a: series(histories[a], 'train_em') for a in ARMS},
      },
      {
        'title': 'Searches per trajectory',
        'xlabel': 'step',
        'ylabel': 'searches',
        'series': {a: series(histories[a], 'searches') for a in ARMS},
      },
      {
        'title': 'Hazard model CRM loss',
        'xlabel': 'step',
        'ylabel': 'loss',
        'series': crm,
      },
      {
        'title': 'SFT loss',
        'xlabel': 'step',
        'ylabel': 'loss',
        'series': {'sft': series(histories['sft'], 'loss')},
      },
    ],
    'notes': [
      'Single seed; small LM on the synthetic knowledge world; RL is '
      + (
        'PPO with a critic and GAE (gamma = lam = 1, pica.ppo).'
        if config.rl.algorithm == 'ppo'
        else 'turn-level GRPO (rl.algorithm = "ppo" gives PPO + GAE).'
      ),
      'Hazard labels come from pivots.annotate (our reading of the '
      'unreleased annotation pipeline).',
      'Curves: each point is the mean over the log window ending at that '
      'step (common.train.fit records).',
    ],
  }
