"""The cost model fitted to step times measured by the runtime.

``measure_step_times`` runs the runtime's own group executable (forward and
backward of the tiny transformer with ring attention under ``shard_map``)
for one sequence of each length on a ring of each degree (devices 0..d-1)
and records the fastest of a few timed calls of the compiled step (the
minimum is the least disturbed by other jobs on a shared machine). ``fit``
then fits a1, a2 and the per-group overhead beta by non-negative least squares
(``cost_model.calibrate``) for every pair of efficiency terms (eff_half,
ring_step_ms) on a grid, and keeps the pair with the smallest RMS relative
error; the per-measurement relative errors are returned with it.

On simulated CPU devices the d ranks of a ring share the machine's cores,
so these times describe this machine, not an accelerator cluster; the
experiment reports the simulation under the fitted model beside the preset,
never as a measured speedup.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import jax
import numpy as np

from dhp import cost_model as cm
from dhp import model as model_lib
from dhp import plan_types as pt
from dhp import runtime as rt


@dataclasses.dataclass(frozen=True)
class Measurement:
  """One measured group step: its sequence lengths, degree and time (ms)."""

  lengths: tuple[int, ...]
  degree: int
  ms: float


@dataclasses.dataclass(frozen=True)
class Calibration:
  """A fitted cost model and how well it reproduces the measurements.

  Attributes:
    model: the fitted CostModel.
    predicted_ms: float64 [M] the model's time of every measurement.
    relative_errors: float64 [M] predicted / measured - 1.
    rms_relative_error: sqrt(mean(relative_errors^2)).
    max_relative_error: max |relative_errors|.
  """

  model: cm.CostModel
  predicted_ms: np.ndarray
  relative_errors: np.ndarray
  rms_relative_error: float
  max_relative_error: float


def runtime_base(cfg: model_lib.ModelConfig, **overrides) -> cm.CostModel:
  """A CostModel shaped like the runtime's model (float32, its layers and
  widths); a1 and a2 are placeholders that ``fit`` replaces."""
  params = dict(
    a1=1e-6,
    a2=1e-3,
    num_layers=cfg.num_layers,
    hidden_size=cfg.d_model,
    kv_size=2 * cfg.d_model,
    bytes_per_elem=4,
  )
  params.update(overrides)
  return cm.CostModel(**params)


def measure_step_times(
  runtime: rt.DHPRuntime,
  params,
  degrees: Sequence[int],
  lengths: Sequence[int],
  repeats: int = 3,
  seed: int = 0,
) -> list[Measurement]:
  """Step time (ms, fastest of ``repeats``) of one sequence of each length
  on each degree.

  Args:
    runtime: the DHP runtime (its devices and executable cache are used).
    params: parameters replicated on the runtime's full mesh.
    degrees: ring degrees, each <= runtime.num_devices.
    lengths: sequence lengths in tokens (>= 2).
    repeats: timed calls per point after one untimed warm call; the
      fastest is kept.
    seed: token seed.

  Returns:
    One Measurement per (degree, length).
  """
  if repeats < 1:
    raise ValueError(f'repeats={repeats}: must be >= 1.')
  for d in degrees:
    if not 1 <= d <= runtime.num_devices:
      raise ValueError(
        f'degree {d}: must be in 1..{runtime.num_devices} (the devices).'
      )
  rng = np.random.default_rng(seed)
  out = []
  for d in degrees:
    for n in lengths:
      if n < 2:
        raise ValueError(f'length {n}: must be >= 2 (next-token loss).')
      tokens = [rng.integers(0, runtime.cfg.vocab_size, n)]
      plan = pt.RoundPlan((pt.GroupPlan(np.array([0]), d, 0, 1.0),), d, 1.0)
      ((offset, degree, total_len),) = runtime.group_shapes([n], plan)
      mesh = runtime.submesh(offset, degree)
      exe = runtime.executable(offset, degree, total_len, params)
      host = rt.pack_group(tokens, degree, total_len)
      batch = jax.device_put(
        host, jax.sharding.NamedSharding(mesh, jax.P(rt.RING_AXIS))
      )
      group_params = runtime.regroup(params, mesh)
      jax.block_until_ready(exe(group_params, batch))  # warm
      times = []
      for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(exe(group_params, batch))
        times.append((time.perf_counter() - start) * 1e3)
      out.append(Measurement((int(n),), int(d), float(np.min(times))))
  return out


def fit(
  measurements: Sequence[Measurement],
  base: cm.CostModel,
  eff_half_grid: Sequence[float] = (0.0, 16.0, 64.0, 256.0, 1024.0),
  ring_step_grid: Sequence[float] = (0.0, 0.01, 0.05, 0.2, 1.0),
) -> Calibration:
  """Fits a1, a2, beta (NNLS) at each (eff_half, ring_step_ms) on the grid.

  Returns:
    The Calibration with the smallest RMS relative error.

  Raises:
    ValueError: fewer than 3 measurements, or an empty or negative grid.
  """
  if len(measurements) < 3:
    raise ValueError(
      f'fit needs >= 3 measurements for 3 parameters, got {len(measurements)}.'
    )
  if not eff_half_grid or not ring_step_grid:
    raise ValueError('fit: eff_half_grid and ring_step_grid must be non-empty.')
  triples = [(m.lengths, m.degree, m.ms) for m in measurements]
  measured = np.array([m.ms for m in measurements])
  best = None
  for eff in eff_half_grid:
    for alpha in ring_step_grid:
      trial = dataclasses.replace(base, eff_half=eff, ring_step_ms=alpha)
      try:
        model = cm.calibrate(triples, trial, relative=True)
      except ValueError:  # a1 = a2 = 0 at this grid point: no fit
        continue
      pred = np.array([model.group_time(x, d) for x, d, _ in triples])
      rel = pred / measured - 1.0
      rms = float(np.sqrt(np.mean(rel**2)))
      if best is None or rms < best.rms_relative_error:
        best = Calibration(model, pred, rel, rms, float(np.abs(rel).max()))
  if best is None:
    raise ValueError('fit: no grid point gives a model whose time grows.')
  return best
