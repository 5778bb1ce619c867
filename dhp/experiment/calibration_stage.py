"""Stage 4: the cost model calibrated on step times measured by the runtime.

The runtime's ring-attention group step (the tiny transformer, forward and
backward) is timed for one sequence of each ``calibration.lengths`` on a
ring of each ``calibration.degrees`` (devices 0..d-1 of the 8 CPU
devices), and ``dhp.calibration.fit`` fits a1, a2, beta and the efficiency
terms (eff_half, ring_step_ms) to those times; the fit's relative errors
are reported. The simulation (DHP over the best static ring CP, one batch
per distribution) is then rerun under the fitted model beside the preset.
The measurement is one cached unit; the simulation under it is recomputed.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import optax

from common import metrics as cmetrics
from dhp import baselines as bl
from dhp import calibration as cb
from dhp import lengths as ln
from dhp import model as model_lib
from dhp import planner as pl
from dhp.experiment import config as config_lib


def _measure(config):
  cal = config.calibration
  mcfg = config_lib.model_config(config.train)
  mcfg = dataclasses.replace(mcfg, max_len=max(mcfg.max_len, max(cal.lengths)))
  opts = (
    {'xla_backend_optimization_level': 0} if config.train.fast_compile else None
  )
  from dhp import runtime as rt  # JAX only for this stage

  n = max(cal.degrees)
  runtime = rt.DHPRuntime(mcfg, optax.sgd(0.0), jax.devices()[:n], opts)
  params, _ = runtime.init(
    model_lib.init_params(jax.random.key(config.seed), mcfg)
  )
  found = cb.measure_step_times(
    runtime, params, cal.degrees, cal.lengths, cal.repeats, config.seed
  )
  return {
    'measurements': [[list(m.lengths), m.degree, m.ms] for m in found],
    'model': {f.name: getattr(mcfg, f.name) for f in dataclasses.fields(mcfg)},
  }


def _speedups(config, model):
  """DHP over the best static ring CP under ``model``, one batch per cell."""
  sim, cal = config.simulation, config.calibration
  rows = {}
  for dist in sim.distributions:
    x = ln.sample(dist, sim.batch_size, config.seed)
    for n in cal.cluster_sizes:
      dhp = pl.plan_batch(x, n, sim.capacity, model).total_ms
      static = bl.best_static(x, n, sim.capacity, model)[1].total_ms
      rows[(dist, n)] = static / dhp
  return rows


def calibration(config, preset, cache_root):
  """Measured step times, the fitted model, its error and the speedups.

  Returns:
    {'measurements': [[lengths, degree, ms]], 'fitted': {a1, a2, beta,
    eff_half, ring_step_ms}, 'rms_relative_error', 'max_relative_error',
    'rows': [[degree, length, measured ms, fitted ms, error]],
    'speedup_rows': [[distribution, devices, x preset, x calibrated]]};
    or, when no grid point fits (`calibration.fit` raises), only
    'measurements', 'rows' ([[degree, length, measured ms]]) and 'no_fit'
    (the reason).
  """
  cache = cmetrics.ResultCache(
    cache_root,
    {
      'seed': config.seed,
      'calibration': config.calibration,
      'train': config.train,
      'num_devices': len(jax.devices()),
    },
  )
  unit = cache.get_or_compute('step_times', lambda: _measure(config))
  mcfg = model_lib.ModelConfig(**unit['model'])
  measured = [
    cb.Measurement(tuple(x), int(d), float(ms))
    for x, d, ms in unit['measurements']
  ]
  try:
    fit = cb.fit(measured, cb.runtime_base(mcfg))
  except ValueError as err:
    # Timing noise (8 simulated devices on 2 shared cores) can leave no
    # model whose time grows with work: report the measurements and the
    # reason, and keep the preset (no crash, no invented fit).
    return {
      'measurements': unit['measurements'],
      'no_fit': str(err),
      'rows': [[m.degree, m.lengths[0], round(m.ms, 3)] for m in measured],
    }
  model = fit.model
  rows = [
    [
      m.degree,
      m.lengths[0],
      round(m.ms, 3),
      round(float(p), 3),
      round(float(e), 3),
    ]
    for m, p, e in zip(
      measured, fit.predicted_ms, fit.relative_errors, strict=True
    )
  ]
  preset_speed = _speedups(config, preset)
  cal_speed = _speedups(config, model)
  speedup_rows = [
    [dist, n, round(preset_speed[(dist, n)], 3), round(cal_speed[(dist, n)], 3)]
    for dist, n in preset_speed
  ]
  return {
    'measurements': unit['measurements'],
    'fitted': {
      k: float(getattr(model, k))
      for k in ('a1', 'a2', 'beta', 'eff_half', 'ring_step_ms')
    },
    'rms_relative_error': fit.rms_relative_error,
    'max_relative_error': fit.max_relative_error,
    'rows': rows,
    'speedup_rows': speedup_rows,
    'min_calibrated_speedup': float(np.min([r[3] for r in speedup_rows])),
  }
