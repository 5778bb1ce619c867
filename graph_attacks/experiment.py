"""The cross-paradigm experiment: every attack x paradigm x defence.

`run(config, workdir)` validates the config, then per seed prepares the
inputs (`pipeline.prepare`), trains each clean victim (`pipeline.clean`)
and each attack with all its victims (`pipeline.attack_run`), and
summarises everything into `workdir/metrics.json` (`pipeline.summary`,
written with `common.report.write_metrics`). Each unit's result is cached
under `workdir/units/` by `common.metrics.ResultCache`, keyed by the part
of the config the unit depends on (`pipeline.units`): a rerun of the same
config trains nothing, a changed setting recomputes the units that read it.
"""

from __future__ import annotations

import time

import ml_collections

from common import metrics as metrics_lib
from common import report
from graph_attacks import config as config_lib
from graph_attacks.pipeline import attack_run
from graph_attacks.pipeline import clean
from graph_attacks.pipeline import prepare
from graph_attacks.pipeline import summary
from graph_attacks.pipeline import units

validate_config = config_lib.validate_config
load_data = prepare.load_data


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the experiment; writes and returns `metrics.json`'s dict."""
  validate_config(config)
  t_start = time.time()
  root = units.units_root(workdir)
  data = None
  results, clean_rows = [], []
  plan = {
    seed: list(units.seed_units(config, seed, root)) for seed in config.seeds
  }
  bar = metrics_lib.progress_bar(
    sum(map(len, plan.values())), desc='graph_attacks units', unit='unit'
  )
  for seed, seed_units in plan.items():
    inputs = None
    for name, cache, kind, what in seed_units:
      bar.update(1)
      bar.set_postfix_str(name, refresh=False)
      res = cache.get(name)
      if res is None:
        if inputs is None:  # only when some unit of this seed is missing
          if data is None:
            data = load_data(config.data, workdir)
          inputs = prepare.prepare_seed(config, data, seed)
        if kind == 'clean':
          res = cache.put(name, clean.clean_row(config, inputs, what))
        else:
          res = cache.put(
            name, attack_run.run_seed_attack(config, inputs, what)
          )
      (clean_rows if kind == 'clean' else results).append(res)
  bar.close()
  metrics = summary.summarise(config, results, clean_rows, workdir)
  metrics['summary']['seconds'] = round(time.time() - t_start, 1)
  return report.write_metrics(workdir, metrics)


def collect(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Summarises the cached units of `config` found in `workdir`, no training.

  For runs cut short, or split over processes whose `units/` files were
  copied together: units that are missing, or were computed with another
  config, are listed in the notes.
  """
  validate_config(config)
  root = units.units_root(workdir)
  results, clean_rows, missing = [], [], []
  for seed in config.seeds:
    for name, cache, kind, _ in units.seed_units(config, seed, root):
      res = cache.get(name)
      if res is None:
        missing.append(name)
      else:
        (clean_rows if kind == 'clean' else results).append(res)
  if not results:
    raise FileNotFoundError(
      f'no attack results of this config under {root} (missing: '
      f'{", ".join(missing)})'
    )
  metrics = summary.summarise(config, results, clean_rows, workdir)
  if missing:
    metrics['notes'].append('Not run (time budget): ' + ', '.join(missing))
  return report.write_metrics(workdir, metrics)
