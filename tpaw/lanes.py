"""Lanes: several independent training runs stacked into one jitted step.

An experiment compares arms over seeds from the same shapes; compiling one
training step per (seed, arm) costs more than the runs themselves on a CPU.
A *lane* is one such run: its parameters, optimizer state and loss
hyperparameters are stacked on a leading axis `[L, ...]` and the step is
`jax.vmap` of the single-run step, so every lane is the same computation it
would be alone, run side by side (in one `fit` / `fit_on_policy` call:
one compile, one checkpoint holding all lanes).

Batches are `[B, L, ...]` (the batch axis first, so the loop shards it over
the mesh as usual). Each lane's metrics come out as scalars named
`lane_key(lane, name)` (`'<lane>/<name>'`; the bare name for the lane
`''`).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from common import train

# Lane-name separator in metric names ('/' is a legal TensorBoard tag).
SEP = '/'


def lane_key(lane: str, name: str) -> str:
  """The metric name of lane `lane`'s metric `name`."""
  return name if lane == '' else f'{lane}{SEP}{name}'


def check_names(names: Sequence[str]) -> None:
  """Lane names are distinct; `''` only for a single lane; no `SEP`."""
  if len(set(names)) != len(names):
    raise ValueError(f'lane names must be distinct; got {list(names)}.')
  if len(names) > 1 and '' in names:
    raise ValueError("the lane name '' is only for a single lane.")
  bad = [n for n in names if SEP in n]
  if bad:
    raise ValueError(f'lane names may not contain {SEP!r}; got {bad}.')


def stack(trees: Sequence[Any]) -> Any:
  """Stacks pytrees of equal structure on a new leading axis `[L, ...]`."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree: Any, i: int) -> Any:
  """Lane `i` of a stacked pytree."""
  return jax.tree.map(lambda x: x[i], tree)


def stack_batches(batches: Sequence[dict]) -> dict:
  """Per-lane batches `[B, ...]` -> one batch `[B, L, ...]` (host arrays)."""
  return {
    k: np.stack([np.asarray(b[k]) for b in batches], axis=1) for k in batches[0]
  }


def init_opt_state(tx: optax.GradientTransformation, params: Any) -> Any:
  """`tx.init` per lane of stacked `params`."""
  return jax.vmap(tx.init)(params)


def create_state(
  params: Sequence[Any],
  tx: optax.GradientTransformation,
  seed: int = 0,
  extras: Sequence[Any] | None = None,
) -> train.TrainState:
  """The step-0 `TrainState` of `L` lanes (stacked params, per-lane `init`)."""
  stacked = stack(params)
  return train.TrainState(
    step=jnp.zeros((), jnp.int32),
    params=stacked,
    opt_state=init_opt_state(tx, stacked),
    rng=jax.random.key(seed),
    extras=None if extras is None else stack(extras),
  )


def make_lane_step(
  loss_fn: Callable[[Any, Any, Any], tuple[jax.Array, dict]],
  tx: optax.GradientTransformation,
  names: Sequence[str],
):
  """`step_fn(state, batch) -> (state, metrics)` over stacked lanes.

  Args:
    loss_fn: `loss_fn(params, batch, hyper) -> (loss, metrics)` of one lane
      (`hyper`: that lane's slice of `state.extras`, or None).
    tx: the optimizer, applied per lane.
    names: the `L` lane names (metric prefixes).

  Returns:
    A step for `common.train.fit` / `fit_on_policy`: `state.params`,
    `state.opt_state` and `state.extras` are stacked `[L, ...]`, batch
    leaves are `[B, L, ...]`; metrics are `lane_key(name, metric)` scalars
    (`loss`, `grad_norm` and the loss's metrics).
  """
  check_names(names)

  def one(params, opt_state, hyper, batch):
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params, batch, hyper
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = {'loss': loss, 'grad_norm': optax.global_norm(grads), **metrics}
    return params, opt_state, metrics

  def step_fn(state, batch):
    params, opt_state, metrics = jax.vmap(one, in_axes=(0, 0, 0, 1))(
      state.params, state.opt_state, state.extras, batch
    )
    out = {
      lane_key(lane, k): v[i]
      for k, v in metrics.items()
      for i, lane in enumerate(names)
    }
    return state._replace(params=params, opt_state=opt_state), out

  return step_fn
