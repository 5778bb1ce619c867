"""The optimizer every PiCA stage uses, built by `common.optim`."""

from __future__ import annotations

import optax

from common import optim

GRAD_CLIP_NORM = 1.0


def adam(
  learning_rate: float, warmup_steps: int = 0
) -> optax.GradientTransformation:
  """Adam after global-norm clipping at 1.0; constant rate after a warmup.

  Args:
    learning_rate: the peak (and, after the warmup, constant) rate.
    warmup_steps: linear warmup from 0 over this many steps (0: none).
  """
  return optim.make_optimizer(
    {
      'name': 'adam',
      'learning_rate': learning_rate,
      'warmup_steps': warmup_steps,
      'grad_clip_norm': GRAD_CLIP_NORM,
    }
  )
