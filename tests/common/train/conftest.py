"""A tiny NNX MLP regression problem shared by the training tests."""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from common import train


class MLP(nnx.Module):
  """2-layer MLP: [B, 4] -> [B, 2]."""

  def __init__(self, rngs: nnx.Rngs, hidden: int = 16):
    self.l1 = nnx.Linear(4, hidden, rngs=rngs)
    self.l2 = nnx.Linear(hidden, 2, rngs=rngs)

  def __call__(self, x):
    return self.l2(jax.nn.relu(self.l1(x)))


@dataclasses.dataclass
class Problem:
  graphdef: Any
  tx: optax.GradientTransformation
  loss_fn: Callable
  step_fn: Callable
  batches: Callable
  hidden: int

  def make_state(self) -> train.TrainState:
    """A fresh step-0 state (fresh arrays each call: fit donates them)."""
    model = MLP(nnx.Rngs(0), hidden=self.hidden)
    _, params = nnx.split(model, nnx.Param)
    return train.TrainState.create(params, self.tx, rng=jax.random.key(1))


def batches(step: int, batch_size: int = 16) -> dict[str, np.ndarray]:
  """Deterministic batch for `step`: x [B, 4], y [B, 2]."""
  rng = np.random.default_rng(step)
  x = rng.normal(size=(batch_size, 4)).astype(np.float32)
  y = np.stack([x[:, 0] - 2 * x[:, 1], x[:, 2] * x[:, 3]], axis=1)
  return {'x': x, 'y': y.astype(np.float32)}


def make_problem(hidden: int = 16) -> Problem:
  graphdef, _ = nnx.split(MLP(nnx.Rngs(0), hidden=hidden), nnx.Param)
  tx = optax.adamw(1e-2, weight_decay=1e-3)

  def loss_fn(params, batch, rng):
    del rng
    model = nnx.merge(graphdef, params)
    return jnp.mean((model(batch['x']) - batch['y']) ** 2)

  return Problem(
    graphdef=graphdef,
    tx=tx,
    loss_fn=loss_fn,
    step_fn=train.make_train_step(loss_fn, tx),
    batches=batches,
    hidden=hidden,
  )


@pytest.fixture
def problem() -> Problem:
  return make_problem()
