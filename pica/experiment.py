"""PiCA on the knowledge world: SFT -> hazard model -> RL, two reward arms.

`run(config, workdir)` checks the config (`pica.config.resolve`, before any
work), builds the shared `pica.stages.context.Context` and runs:

1. **SFT warm-up** (`pica.stages.sft_stage`, `common.train.fit`, in
   `workdir/sft`) on golden Search-R1 traces of the train split.
2. **Hazard model** (`pica.stages.hazard_stage`, `fit`, `workdir/hazard`):
   SFT rollouts labelled by `pica.pivots`, a `pica.hazard.HazardModel`
   trained with the CRM loss, held-out CRM loss on further questions.
3. **RL** per arm (`pica.stages.rl_stage`, `common.train.fit_on_policy`,
   `workdir/rl_<arm>`) from the SFT policy with the same seeds and budget:
   `'outcome'` (Search-R1 baseline) and `'pica'` (+ hazard step rewards),
   turn-level GRPO or PPO (`rl.algorithm`).
4. **Evaluation** (`pica.stages.evaluation`): greedy EM and searches per
   split, cached per unit in `workdir/evals` (`common.metrics.ResultCache`).

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


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """SFT, hazard model, RL with both arms, evaluation; writes metrics.json.

  Raises:
    ValueError: a bad config (names the field), before any training.
  """
  config = config_lib.resolve(config)
  workdir = pathlib.Path(workdir)
  watch = metrics_lib.Stopwatch()
  ctx = context_lib.Context(config)
  cache = metrics_lib.ResultCache(workdir / 'evals', config)
  sft_params, sft_hist, sft_info = sft_stage.train_sft(ctx, workdir / 'sft')
  results = {
    'sft': cache.get_or_compute(
      'sft', lambda: evaluation.evaluate(ctx, sft_params)
    )
  }
  h_graph, h_params, hz_hist, hz_stats = hazard_stage.train_hazard(
    ctx, sft_params, workdir / 'hazard'
  )
  histories = {'sft': sft_hist, 'hazard': hz_hist}
  for arm in ARMS:
    trainer = rl_stage.ArmTrainer(ctx, arm, sft_params, (h_graph, h_params))
    state, histories[arm] = trainer.train(workdir / f'rl_{arm}')
    params = rl_stage.policy_params(state)
    results[arm] = cache.get_or_compute(
      arm, lambda p=params: evaluation.evaluate(ctx, p)
    )
  metrics = report.build(
    config, results, histories, sft_info, hz_stats, watch.elapsed()
  )
  return report_lib.write_metrics(workdir, metrics)
