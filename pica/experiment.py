"""PiCA on the knowledge world: SFT -> hazard model -> RL arms, over seeds.

`run(config, workdir)` checks the config (`pica.config.resolve`, before any
work), builds the shared `pica.stages.context.Context` and runs:

1. **SFT warm-up** (`pica.stages.sft_stage`, `common.train.fit`, in
   `workdir/sft`) on golden Search-R1 traces of the train split.
2. **Hazard model** (`pica.stages.hazard_stage`, `fit`, `workdir/hazard`):
   SFT rollouts labelled by `pica.pivots`, a `pica.hazard.HazardModel`
   trained with the CRM loss, held-out CRM loss on further questions.
3. **RL** per arm of `config.arms` (`pica.stages.rl_stage`,
   `common.train.fit_on_policy`, `workdir/rl_<arm>`) from the SFT policy
   with the same seed and budget: `'outcome'` (Search-R1 baseline),
   `'pica'` (+ hazard step rewards; only when the hazard model's held-out
   search-step AUC reaches `hazard.min_auc`) and `'oracle'` (+ step
   rewards from the pivot labels: the ceiling), turn-level GRPO or PPO
   (`rl.algorithm`).
4. **Evaluation** (`pica.stages.evaluation`): greedy EM and searches per
   split, cached per unit in `workdir/evals` (`common.metrics.ResultCache`).

Each training seed of `config.seeds` repeats 1-4 on the same world
(`config.seed`); the report gives mean ± std over seeds and paired
bootstrap intervals of each arm minus outcome-only (`common.stats`).
Every stage checkpoints and resumes, so a killed run started again with
the same config and workdir continues where it stopped and ends with the
same numbers. `metrics.json` is written by `common.report.write_metrics`.
"""

from __future__ import annotations

import pathlib
from typing import Any

import ml_collections

from common import metrics as metrics_lib
from common import report as report_lib
from pica import config as config_lib
from pica.stages import context as context_lib
from pica.stages import evaluation
from pica.stages import hazard_stage
from pica.stages import report
from pica.stages import rl_stage
from pica.stages import sft_stage

ARMS = config_lib.ARMS
RL_ALGORITHMS = config_lib.RL_ALGORITHMS


def hazard_gate(config, hazard_stats) -> str | None:
  """Why the 'pica' arm may not start (None: it may).

  The arm runs only when the hazard model's held-out search-step AUC
  reaches `hazard.min_auc` (0 disables the gate).
  """
  bar = config.hazard.min_auc
  if bar <= 0:
    return None
  auc = hazard_stats.get('heldout_search_auc', float('nan'))
  if auc >= bar:
    return None
  return f'held-out search-step AUC {auc:.3f} < hazard.min_auc {bar:g}'


def run_seed(ctx, workdir: pathlib.Path, cache, tag: str) -> dict[str, Any]:
  """SFT, hazard model and every arm of one training seed."""
  config = ctx.config
  sft_params, sft_hist, sft_info = sft_stage.train_sft(ctx, workdir / 'sft')
  results = {
    'sft': cache.get_or_compute(
      f'{tag}sft', lambda: evaluation.evaluate(ctx, sft_params)
    )
  }
  h_graph, h_params, hz_hist, hz_stats = hazard_stage.train_hazard(
    ctx, sft_params, workdir / 'hazard'
  )
  histories = {'sft': sft_hist, 'hazard': hz_hist}
  gated = {}
  for arm in config.arms:
    reward = config_lib.split_arm(arm, config.rl.algorithm)[0]
    reason = hazard_gate(config, hz_stats) if reward == 'pica' else None
    if reason is not None:
      gated[arm] = reason
      continue
    trainer = rl_stage.ArmTrainer(ctx, arm, sft_params, (h_graph, h_params))
    state, histories[arm] = trainer.train(workdir / f'rl_{arm}')
    params = rl_stage.policy_params(state)
    results[arm] = cache.get_or_compute(
      f'{tag}{arm}', lambda p=params: evaluation.evaluate(ctx, p)
    )
  return {
    'seed': ctx.seed,
    'results': results,
    'histories': histories,
    'sft_info': sft_info,
    'hazard_stats': hz_stats,
    'gated': gated,
  }


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Every seed of `config.seeds`: SFT, hazard model, RL arms, evaluation.

  One seed writes its stages to `workdir/<stage>`; several seeds to
  `workdir/seed<k>/<stage>` (each seed's arms share its SFT policy and
  hazard model: paired). Writes metrics.json with per-seed means and
  paired intervals of each arm minus `'outcome'`.

  Raises:
    ValueError: a bad config (names the field), before any training.
  """
  config = config_lib.resolve(config)
  workdir = pathlib.Path(workdir)
  watch = metrics_lib.Stopwatch()
  cache = metrics_lib.ResultCache(workdir / 'evals', config)
  single = len(config.seeds) == 1
  runs, mesh = [], None
  for seed in config.seeds:
    ctx = context_lib.Context(config, mesh=mesh, seed=seed)
    mesh = ctx.mesh
    folder = workdir if single else workdir / f'seed{seed}'
    runs.append(run_seed(ctx, folder, cache, '' if single else f'seed{seed}_'))
  metrics = report.build(config, runs, watch.elapsed())
  return report_lib.write_metrics(workdir, metrics)
