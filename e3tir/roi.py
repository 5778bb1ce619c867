"""ROI: score gain per unit of expert data and training compute [recon].

The paper reports ROI as "a comprehensive metric integrating performance,
data cost, and training efficiency", normalised so that SFT-then-RL is
1.00x and E3-TIR 1.46x; its formula is not public. The project's
definition:

  ROI = (score - score_base) / (c_data * N_expert + c_step * N_steps)

with `N_expert` the expert trajectories used, `N_steps` the optimizer steps
of training (warm-up + RL), `score_base` the base model's score, and the
cost weights configurable; `relative_roi` divides by the baseline's ROI.
"""

from __future__ import annotations

import math


def roi(
  score: float,
  base_score: float,
  num_expert: float,
  num_steps: float,
  c_data: float = 1.0,
  c_step: float = 1.0,
) -> float:
  """The ROI of one run (module docstring); cost must be > 0."""
  cost = c_data * num_expert + c_step * num_steps
  if not cost > 0:
    raise ValueError(
      f'ROI cost c_data * N_expert + c_step * N_steps must be > 0, got {cost}'
    )
  return (score - base_score) / cost


def relative_roi(method: float, baseline: float) -> float:
  """`method / baseline`, NaN when the baseline's ROI is not positive."""
  if not baseline > 0:
    return math.nan
  return method / baseline
