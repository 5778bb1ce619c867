"""The training state: a checkpointable pytree of arrays."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class TrainState(NamedTuple):
  """Everything a training run needs to continue exactly where it stopped.

  A plain `NamedTuple`, so it is a pytree: it goes through `jax.jit`,
  `jax.tree.map` and orbax checkpoints as is, and restores with the same
  structure (optax's `NamedTuple` states included).

  Attributes:
    step: int32 scalar, the number of updates applied so far. `fit` owns it:
      the step function's returned `step` is overwritten with `step + 1`.
    params: the trainable parameters (e.g. the `nnx.Param` state of
      `nnx.split(model, nnx.Param, ...)`).
    opt_state: the optax optimizer state for `params`.
    rng: a PRNG key (`jax.random.key` or legacy `uint32[2]`); a step
      function that needs randomness splits it and returns the new key.
    extras: any other arrays that evolve with training (EMA parameters,
      batch statistics, a KL controller's coefficient, ...); `None` if none.
  """

  step: jax.Array
  params: Any
  opt_state: optax.OptState
  rng: jax.Array
  extras: Any = None

  @classmethod
  def create(
    cls,
    params: Any,
    tx: optax.GradientTransformation,
    rng: jax.Array | int = 0,
    extras: Any = None,
  ) -> TrainState:
    """Builds the step-0 state.

    Args:
      params: initial parameters (pytree of arrays).
      tx: the optimizer; its `init(params)` gives `opt_state`.
      rng: a PRNG key, or an int seed for `jax.random.key`.
      extras: optional pytree of extra arrays.

    Returns:
      `TrainState(step=0, params, tx.init(params), rng, extras)`.
    """
    if isinstance(rng, int):
      rng = jax.random.key(rng)
    return cls(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      rng=rng,
      extras=extras,
    )


def make_train_step(
  loss_fn,
  tx: optax.GradientTransformation,
  *,
  has_aux: bool = False,
):
  """A standard `step_fn(state, batch) -> (state, metrics)` for `fit`.

  Args:
    loss_fn: `loss_fn(params, batch, rng) -> loss` (a float scalar), or
      `-> (loss, aux)` with `aux` a dict of scalar metrics when `has_aux`.
    tx: the optimizer (called as `tx.update(grads, opt_state, params)`, so
      weight decay and masks that need the params work).
    has_aux: whether `loss_fn` returns `(loss, aux)`.

  Returns:
    A pure step function. Its metrics are `loss`, `grad_norm` (global L2
    norm of the gradients), `param_norm` and any `aux` entries. It splits
    `state.rng` once per step and passes the sub-key to `loss_fn`.
  """

  def step_fn(state: TrainState, batch: Any):
    rng, sub = jax.random.split(state.rng)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=has_aux)
    out, grads = grad_fn(state.params, batch, sub)
    loss, aux = out if has_aux else (out, {})
    clash = sorted(set(aux) & {'loss', 'grad_norm', 'param_norm'})
    if clash:
      raise ValueError(
        f'make_train_step: loss_fn aux metrics {clash} clash with the '
        "step's own metrics 'loss', 'grad_norm', 'param_norm'; rename them."
      )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
      'loss': loss,
      'grad_norm': optax.global_norm(grads),
      'param_norm': optax.global_norm(params),
      **aux,
    }
    new_state = state._replace(params=params, opt_state=opt_state, rng=rng)
    return new_state, metrics

  return step_fn
