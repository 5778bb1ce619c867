"""``run(config, workdir)``: the DHP experiment's stages, in order.

1. ``config.validate_config``: every field checked before any work.
2. ``simulation``: DHP vs the baselines on the cost model, the penalty
   sweep and the per-rank utilisation of one round.
3. ``planner_study``: planner latency and the gap to the exact optimum.
4. ``calibration_stage``: the cost model fitted to measured step times,
   and the simulation under it beside the preset.
5. ``runtime_check``: planned DHP steps on devices vs one device.
6. ``report``: ``metrics.json`` through ``common.report.write_metrics`` and
   one PNG per curve through ``common.report.plot_curve``.

Unit results are cached under ``workdir/units/<stage>`` keyed by the config
fields they depend on.
"""

from __future__ import annotations

import pathlib
from typing import Any

from common import report as creport
from dhp.experiment import calibration_stage
from dhp.experiment import config as config_lib
from dhp.experiment import planner_study
from dhp.experiment import report
from dhp.experiment import runtime_check
from dhp.experiment import simulation

UNITS_DIR = 'units'
# PNG written into the workdir for each curve title prefix.
PLOT_FILES = {
  'Simulated speedup over static_ring': 'speedup_vs_static_ring.png',
  'Simulated speedup over ulysses': 'speedup_vs_ulysses.png',
  'Simulated speedup over megatron_balanced': (
    'speedup_vs_megatron_balanced.png'
  ),
  'Per-rank utilisation': 'utilisation.png',
  'Planner latency': 'planner_latency.png',
  'Tiny transformer loss': 'train_loss.png',
}


def plot_file(title: str) -> str:
  """The workdir PNG name of the curve called ``title``."""
  for prefix, name in PLOT_FILES.items():
    if title.startswith(prefix):
      return name
  raise KeyError(f'no plot file for curve {title!r}.')


def run(config, workdir) -> dict[str, Any]:
  """Runs the experiment; writes metrics.json and PNGs under ``workdir``.

  Returns:
    The metrics dict that was written.

  Raises:
    ValueError: an unknown config field or a bad value (names the field),
      before any work.
  """
  config_lib.validate_config(config)
  workdir = pathlib.Path(workdir)
  units = workdir / UNITS_DIR
  cost = config_lib.cost_from_config(config.cost)
  sim_rows, sim_curves = simulation.simulate(config, cost, units / 'simulation')
  sweep_rows = (
    simulation.sweep(config, cost, units / 'sweep')
    if config.sweep.enabled
    else []
  )
  lat_rows, lat_series = planner_study.latency(config, cost)
  gap = planner_study.optimality_gap(config, cost, units / 'gap')
  util_curve, u_dhp, u_static = simulation.utilisation(config, cost)
  calibrated = (
    calibration_stage.calibration(config, cost, units / 'calibration')
    if config.calibration.enabled
    else None
  )
  training = (
    runtime_check.runtime_check(config, units / 'runtime')
    if config.train.enabled
    else None
  )
  results = report.StageResults(
    cost=cost,
    sim_rows=sim_rows,
    sim_curves=sim_curves,
    sweep_rows=sweep_rows,
    latency_rows=lat_rows,
    latency_series=lat_series,
    gap=gap,
    utilisation_curve=util_curve,
    utilisation_dhp=u_dhp,
    utilisation_static=u_static,
    training=training,
    calibration=calibrated,
  )
  metrics = report.build_metrics(config, results)
  for curve in metrics['curves']:
    creport.plot_curve(curve, workdir / plot_file(curve['title']))
  return creport.write_metrics(workdir, metrics)
