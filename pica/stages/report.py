"""The run's `metrics.json` content (schema: `common/report/README.md`).

Per seed, each arm's greedy EM is averaged over the held-out-entity test
splits (`test_<k>hop`, "held-out EM") and taken on the compositional split;
the report gives mean ± std over seeds and, for each step-reward arm, the
paired bootstrap interval of arm minus outcome-only (`common.stats`) over
the seeds where both ran.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common import stats
from pica import config as config_lib

STEP_ARMS = config_lib.STEP_ARMS
LABELS = {
  'sft': 'SFT',
  'outcome': 'outcome-only',
  'pica': 'PiCA',
  'oracle': 'oracle hazard',
}
PAPER_GAIN = '+15.2% relative EM (3B, 7 benchmarks)'


def label(arm: str, config) -> str:
  """The report's name of an arm: 'PiCA', 'PiCA (PPO)' when the arm names
  an algorithm other than rl.algorithm."""
  reward, alg = config_lib.split_arm(arm, config.rl.algorithm)
  suffix = '' if alg == config.rl.algorithm else f' ({alg.upper()})'
  return LABELS[reward] + suffix


def series(history, key: str) -> dict[str, list]:
  """`{'x': steps, 'y': values}` of the records in `history` with `key`."""
  pts = [r for r in history if key in r]
  return {'x': [r['step'] for r in pts], 'y': [r[key] for r in pts]}


def mean_series(histories, key: str) -> dict[str, list]:
  """The pointwise mean over seeds of `key` at the steps all seeds logged."""
  per = [series(h, key) for h in histories]
  steps = sorted(set.intersection(*(set(s['x']) for s in per))) if per else []
  ys = [[dict(zip(s['x'], s['y'], strict=True))[x] for s in per] for x in steps]
  return {'x': steps, 'y': [float(np.mean(y)) for y in ys]}


def penalty_can_fire(config) -> bool:
  """Whether a rollout can make more searches than the penalty-free count."""
  return config.rollout.max_turns > config.reward.penalty_free


def _pm(values) -> str:
  m, s = stats.mean_std(values)
  return f'{m:.3f} ± {s:.3f}'


def split_names(results: dict[str, float]) -> list[str]:
  return sorted(k[: -len('_em')] for k in results if k.endswith('_em'))


def scores(results: dict[str, float]) -> dict[str, float]:
  """`{'heldout_em', 'compositional_em', 'searches'}` of one evaluation,
  with `'heldout_em_sampled'` and `'compositional_em_sampled'` when it
  has the k-sample EM (`eval.samples` > 0)."""
  splits = split_names(results)
  test = [s for s in splits if s.startswith('test_')]
  out = {
    'heldout_em': float(np.mean([results[f'{s}_em'] for s in test])),
    'compositional_em': results.get('compositional_em', float('nan')),
    'searches': float(np.mean([results[f'{s}_searches'] for s in splits])),
  }
  if f'{test[0]}_em_sampled' in results:
    out['heldout_em_sampled'] = float(
      np.mean([results[f'{s}_em_sampled'] for s in test])
    )
    out['compositional_em_sampled'] = results.get(
      'compositional_em_sampled', float('nan')
    )
  return out


def build(config, runs: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
  """The metrics dict of a run over seeds.

  Args:
    config: the resolved config.
    runs: one `pica.experiment.run_seed` result per seed, in seed order:
      `{'seed', 'results' {'sft' | arm: evaluate(...)}, 'histories',
      'sft_info', 'hazard_stats', 'gated' {arm: reason}}`.
    seconds: wall time of the run.
  """
  arms = [
    a for a in ('sft', *config.arms) if any(a in r['results'] for r in runs)
  ]
  seeds = [r['seed'] for r in runs]
  splits = split_names(runs[0]['results']['sft'])
  per_seed = {
    a: [scores(r['results'][a]) if a in r['results'] else None for r in runs]
    for a in arms
  }

  def values(arm, key):
    return [s[key] for s in per_seed[arm] if s is not None]

  rows = []
  for s in splits:
    row = [s]
    for a in arms:
      row.append(
        _pm([r['results'][a][f'{s}_em'] for r in runs if a in r['results']])
      )
    for a in arms if config.eval.samples else ():
      row.append(
        _pm(
          [
            r['results'][a][f'{s}_em_sampled']
            for r in runs
            if a in r['results']
          ]
        )
      )
    for a in arms:
      row.append(
        _pm(
          [r['results'][a][f'{s}_searches'] for r in runs if a in r['results']]
        )
      )
    rows.append(row)
  summary: dict[str, Any] = {}
  for a in arms:
    name = 'outcome_only' if a == 'outcome' else a
    summary[f'heldout_em_{name}'] = float(np.mean(values(a, 'heldout_em')))
    if 'compositional' in splits:  # the knowledge world's split
      summary[f'compositional_em_{name}'] = float(
        np.mean(values(a, 'compositional_em'))
      )
    if config.eval.samples:
      summary[f'heldout_em_sampled_{name}'] = float(
        np.mean(values(a, 'heldout_em_sampled'))
      )
  default_alg = config.rl.algorithm
  measures = [('heldout_em', 'held-out EM (test splits)', True)]
  if 'compositional' in splits:
    measures.append(('compositional_em', 'compositional EM', False))
  k = config.eval.samples
  if k:
    measures.append(('heldout_em_sampled', f'held-out EM ({k} samples)', True))
    if 'compositional' in splits:
      measures.append(
        ('compositional_em_sampled', f'compositional EM ({k} samples)', False)
      )
  # (method arm, baseline arm, paper claim): each step-reward arm against
  # the outcome-only arm of its algorithm, then each arm that names another
  # algorithm against the same reward arm on rl.algorithm
  pairs = []
  for a in arms[1:]:  # arms[0] is 'sft'
    reward, alg = config_lib.split_arm(a, default_alg)
    if reward in STEP_ARMS:
      pairs.append((a, config_lib.baseline_arm(a, default_alg), PAPER_GAIN))
  for a in arms[1:]:
    reward, alg = config_lib.split_arm(a, default_alg)
    if alg != default_alg and reward in arms:
      pairs.append((a, reward, ''))
  effects = []
  for a, base, paper in pairs:
    both = [
      (m, b)
      for m, b in zip(per_seed[a], per_seed[base], strict=True)
      if m is not None and b is not None
    ]
    if not both:
      continue
    for key, name, claimed in measures:
      e = stats.paired_effect(
        [m[key] for m, _ in both], [b[key] for _, b in both]
      )
      effects.append(
        e.as_entry(
          name, label(a, config), label(base, config), paper if claimed else ''
        )
      )
  hz = [r['hazard_stats'] for r in runs]

  def auc_cell(h, key):
    v = h.get(key, float('nan'))
    return v if np.isfinite(v) else 'n/a (one class)'

  auc_rows = [
    [
      r['seed'],
      r['hazard_stats']['trajectories'],
      r['hazard_stats']['steps'],
      auc_cell(r['hazard_stats'], 'heldout_search_auc_start'),
      auc_cell(r['hazard_stats'], 'heldout_search_auc'),
      auc_cell(r['hazard_stats'], 'heldout_end_auc'),
      '; '.join(
        f'{label(a, config)}: '
        + r['gated'].get(a, 'ran' if a in r['results'] else '-')
        for a in config.arms
        if config_lib.split_arm(a, default_alg)[0] == 'pica'
      )
      or '-',
    ]
    for r in runs
  ]
  for key in ('heldout_search_auc', 'heldout_end_auc'):
    got = [h[key] for h in hz if key in h and np.isfinite(h[key])]
    if got:
      summary[f'hazard_{key}'] = float(np.mean(got))
  for key, pick in (('_start', 0), ('', -1)):
    held_loss = [
      [r for r in run['histories']['hazard'] if 'eval_crm_loss' in r]
      for run in runs
    ]
    if all(held_loss):
      summary[f'hazard_heldout_crm_loss{key}'] = float(
        np.mean([h[pick]['eval_crm_loss'] for h in held_loss])
      )
  summary['hazard_trajectories'] = hz[0]['trajectories']
  summary['hazard_negative_fraction'] = float(
    np.mean([h['negative_fraction'] for h in hz])
  )
  summary['sft_examples'] = runs[0]['sft_info']['sft_examples']
  summary['num_seeds'] = len(runs)
  summary['seconds'] = seconds
  named = [  # arms whose name picks an algorithm other than rl.algorithm
    a
    for a in config.arms
    if config_lib.split_arm(a, default_alg)[1] != default_alg
  ]
  gated = [(r['seed'], reason) for r in runs for reason in r['gated'].values()]
  notes = [
    f"Seeds {seeds} on one world (config.seed {config.seed}); each seed's "
    'arms share its SFT policy and hazard model (paired). Small LM on the '
    'synthetic knowledge world; RL is '
    + (
      'PPO with a critic and GAE (gamma = lam = 1, pica.ppo).'
      if config.rl.algorithm == 'ppo'
      else f'turn-level GRPO (norm_mode {config.rl.norm_mode!r}, std floor '
      f'{config.rl.std_floor:g}, step weight {config.rl.step_weight:g}; '
      'rl.algorithm = "ppo" gives PPO + GAE).'
    ),
    *(
      [
        'Arms that name an algorithm use it instead (same seeds, SFT policy '
        'and hazard model): '
        + ', '.join(f'{label(a, config)} = {a!r}' for a in named)
        + '.'
      ]
      if named
      else []
    ),
    'Hazard labels come from pivots.annotate (our reading of the '
    'unreleased annotation pipeline); the oracle arm uses those labels '
    f'directly (h = {config.hazard.oracle_low:g} on pivots, '
    f'{config.hazard.oracle_high:g} otherwise) as the ceiling of what a '
    'hazard model trained on them can give.',
    'Curves: mean over seeds; each point is the mean over the log window '
    'ending at that step (common.train.fit records).',
  ]
  if not penalty_can_fire(config):
    notes.append(
      f'The over-search penalty cannot fire here: rollout.max_turns '
      f'{config.rollout.max_turns} <= reward.penalty_free '
      f'{config.reward.penalty_free} (it starts at search '
      f'{config.reward.penalty_free + 1}; the paper config allows 5 turns).'
    )
  if gated:
    notes.append(
      'The PiCA arm did not run for '
      + '; '.join(f'seed {s} ({why})' for s, why in gated)
      + ': RL on hazard rewards starts only when the hazard model ranks '
      "held-out '-' above '+' search steps well enough (hazard.min_auc)."
    )
  crm = {'train': mean_series([r['histories']['hazard'] for r in runs], 'loss')}
  held = mean_series(
    [r['histories']['hazard'] for r in runs], 'eval_search_auc'
  )
  rl_arms = [a for a in config.arms if a in arms]
  sft = mean_series([r['histories']['sft'] for r in runs], 'loss')
  sft_curve = [  # none when sft.steps = 0 (the paper config)
    {'title': 'SFT loss', 'xlabel': 'step', 'ylabel': 'loss',
     'series': {'sft': sft}}
  ] if sft['x'] else []  # fmt: skip

  def arm_curve(title, ylabel, key):
    runs_of = lambda a: [r['histories'][a] for r in runs if a in r['histories']]
    return {
      'title': f'{title}, mean over seeds',
      'xlabel': 'step',
      'ylabel': ylabel,
      'series': {
        label(a, config): mean_series(runs_of(a), key) for a in rl_arms
      },
    }

  return {
    'title': 'PiCA: hazard step rewards vs outcome-only RL'
    + (' (knowledge world)' if config.data is None else ''),
    'config_name': config.name,
    'headline': [
      k
      for k in (
        'heldout_em_pica',
        'heldout_em_oracle',
        'heldout_em_outcome_only',
        'hazard_heldout_search_auc',
      )
      if k in summary
    ],
    'summary': summary,
    'effects': effects,
    'tables': [
      {
        'title': 'Greedy EM'
        + (f', {config.eval.samples}-sample EM' if config.eval.samples else '')
        + ' and searches per split (mean ± std over seeds)',
        'columns': ['split']
        + [f'EM {label(a, config)}' for a in arms]
        + [
          f'{config.eval.samples}-sample EM {label(a, config)}'
          for a in (arms if config.eval.samples else ())
        ]
        + [f'searches {label(a, config)}' for a in arms],
        'rows': rows,
        'note': f'Paper (abstract): {PAPER_GAIN} over the strongest '
        'baseline; not comparable in scale.',
      },
      {
        'title': "Hazard model: held-out '-' vs '+' ranking AUC per seed",
        'columns': [
          'seed',
          'trajectories',
          'steps',
          'search AUC at start',
          'search AUC',
          'end-step AUC',
          'PiCA arm',
        ],
        'rows': auc_rows,
        'note': f'Gate: the PiCA arm runs when the search AUC >= '
        f'{config.hazard.min_auc:g} (0 = no gate). 0.5 is chance.',
      },
    ],
    'curves': [
      arm_curve('RL training EM (sampled)', 'EM', 'train_em'),
      arm_curve('Searches per trajectory', 'searches', 'searches'),
      {
        'title': 'Hazard model CRM loss (train) and held-out search AUC',
        'xlabel': 'step',
        'ylabel': 'loss / AUC',
        'series': {
          **crm,
          **({'held-out search AUC': held} if held['x'] else {}),
        },
      },
    ]
    + sft_curve,
    'notes': notes,
  }
