"""A generic, resumable, sharded training loop.

`fit` runs a pure `step_fn(state, batch) -> (state, metrics)` under
`jax.jit` with the state replicated (or FSDP-sharded) and the batch split
over the mesh's `('data', 'fsdp')` axes, donates the state buffers, saves
orbax checkpoints, resumes from the latest one, logs metrics (JSONL +
TensorBoard) and stops with `NonFiniteError` when a metric turns NaN/inf.

Batches are a function of the step, `batches(step) -> batch`, so a resumed
run sees exactly the batches an uninterrupted run would have seen, and its
final state is identical.

`fit_on_policy` is the same loop for on-policy RL: its batches come from
`rollout_fn(state, step) -> (batch, metrics)`, which sees the current state
(sample with the current policy, score, compute advantages) before the
jitted update runs on the result. Everything else (checkpoints, resume,
history across resumes, metrics, NaN checks, mesh sharding) is shared.
"""

from __future__ import annotations

import contextlib
import math
import os
import pathlib
import signal
import threading
import weakref
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh

from common import metrics as metrics_lib
from common.train import checkpoint as checkpoint_lib
from common.train import mesh as mesh_lib
from common.train.state import TrainState

StepFn = Callable[[TrainState, Any], tuple[TrainState, Mapping[str, Any]]]
RolloutFn = Callable[[TrainState, int], tuple[Any, Mapping[str, Any]]]


class NonFiniteError(FloatingPointError):
  """A training metric became NaN or infinite.

  Attributes:
    step: the step whose update produced it (`state.step` after the update;
      the batch was `batches(step - 1)`).
    metric: the metric's name.
    value: its value.
  """

  def __init__(
    self, step: int, metric: str, value: float, others: str, detail: str
  ):
    self.step, self.metric, self.value = step, metric, value
    also = f'; also non-finite: {others}' if others else ''
    super().__init__(
      f'Non-finite metric {metric!r} = {value} at step {step} (the update '
      f'computed from batches({step - 1}){also}). {detail}'
    )


class TrainingInterrupted(KeyboardInterrupt):
  """Ctrl-C (SIGINT) stopped a loop at a step boundary, after a checkpoint.

  Attributes:
    step: the step whose checkpoint was saved; a rerun resumes from it.
  """

  def __init__(self, step: int, directory: Any):
    self.step = step
    super().__init__(
      f'interrupted: stopped at step {step} with a checkpoint in '
      f'{directory}; run the same command again to resume.'
    )


@contextlib.contextmanager
def _stop_at_step_boundary():
  """Turns the first SIGINT into a flag the loop reads between steps.

  Yields a `threading.Event` that is set on Ctrl-C; a second Ctrl-C
  interrupts at once (the default handler is back). Outside the main thread
  signals cannot be caught, and the event is never set.
  """
  event = threading.Event()
  if threading.current_thread() is not threading.main_thread():
    yield event
    return
  previous = signal.getsignal(signal.SIGINT)

  def handler(signum, frame):
    del signum, frame
    event.set()
    signal.signal(signal.SIGINT, previous)
    logging.warning(
      'Ctrl-C: stopping after this step with a checkpoint (Ctrl-C again '
      'to stop at once).'
    )

  signal.signal(signal.SIGINT, handler)
  try:
    yield event
  finally:
    if signal.getsignal(signal.SIGINT) is handler:
      signal.signal(signal.SIGINT, previous)


def train_state_sharding(
  state: TrainState, mesh: Mesh, *, fsdp: bool = False, min_size: int = 2**12
) -> TrainState:
  """Shardings for a `TrainState`.

  Args:
    state: the state (arrays or `ShapeDtypeStruct`s).
    mesh: the training mesh.
    fsdp: split `params` and `opt_state` leaves over the `'fsdp'` axis (see
      `mesh.fsdp_sharding`); otherwise everything is replicated. `step`,
      `rng` and `extras` are always replicated.
    min_size: with `fsdp`, leaves with fewer elements stay replicated.

  Returns:
    A `TrainState` of `NamedSharding`s.
  """
  rep = mesh_lib.replicated(mesh)
  whole = lambda tree: jax.tree.map(lambda _: rep, tree)
  if fsdp:
    split = lambda tree: mesh_lib.fsdp_sharding(tree, mesh, min_size)
  else:
    split = whole
  return TrainState(
    step=rep,
    params=split(state.params),
    opt_state=split(state.opt_state),
    rng=rep,
    extras=whole(state.extras),
  )


def _check_positive(name: str, value: Any, allow_none: bool = False) -> None:
  if value is None and allow_none:
    return
  if not isinstance(value, (int, np.integer)) or value < 1:
    allowed = 'an int >= 1' + (' or None' if allow_none else '')
    raise ValueError(f'fit: {name}={value!r} must be {allowed}.')


# step_fn -> its wrapper: the same wrapper object for the same step function,
# so a second `fit` call with it (another arm, seed or resume) reuses jit's
# compiled executables instead of tracing and compiling again.
_WRAPPED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _wrap_step(step_fn: StepFn):
  """Adds structure checks and the step counter around `step_fn`."""
  try:
    return _WRAPPED[step_fn]
  except (KeyError, TypeError):  # TypeError: not weakly referenceable
    pass

  def wrapped(state, batch):
    new_state, step_metrics = step_fn(state, batch)
    if jax.tree.structure(new_state) != jax.tree.structure(state):
      raise ValueError(
        'fit: step_fn returned a state whose pytree structure differs from '
        f'its input.\n  in:  {jax.tree.structure(state)}\n  out: '
        f'{jax.tree.structure(new_state)}'
      )
    if not isinstance(step_metrics, Mapping):
      raise TypeError(
        'fit: step_fn must return (state, metrics) with metrics a dict of '
        f'scalars; got {type(step_metrics).__name__}.'
      )
    for name, value in step_metrics.items():
      if jnp.shape(value) != ():
        raise ValueError(
          f'fit: metric {name!r} has shape {jnp.shape(value)}; step_fn '
          'metrics must be scalars (reduce over the batch).'
        )
    new_state = new_state._replace(step=state.step + 1)
    return new_state, dict(step_metrics)

  try:
    _WRAPPED[step_fn] = wrapped
  except TypeError:
    pass
  return wrapped


def _fresh_copy(state: Any, shardings: Any) -> Any:
  """`state` placed with `shardings` in new buffers.

  The loop donates the state's buffers, and `jax.device_put` may alias the
  caller's arrays even with `may_alias=False` (e.g. a single-device array
  replicated over a mesh keeps its buffer as one shard), so the copy is made
  by a jitted `jnp.copy`, whose outputs never alias its inputs.
  """
  placed = jax.device_put(state, shardings)
  return jax.jit(_copy_tree, out_shardings=shardings)(placed)


def _copy_tree(tree: Any) -> Any:
  return jax.tree.map(jnp.copy, tree)


def _first_non_finite(pending: list[tuple[int, dict[str, Any]]]):
  """(step, metric, value, others) of the first non-finite metric, or None.

  Within a step, `loss` is reported first if it is among the bad metrics;
  `others` lists the step's other non-finite metrics.
  """
  for step, values in pending:
    bad = {k: float(v) for k, v in values.items() if not math.isfinite(v)}
    if bad:
      name = 'loss' if 'loss' in bad else sorted(bad)[0]
      others = ', '.join(
        f'{k}={v}' for k, v in sorted(bad.items()) if k != name
      )
      return step, name, bad[name], others
  return None


def fit(
  state: TrainState,
  step_fn: StepFn,
  batches: Callable[[int], Any],
  *,
  num_steps: int,
  workdir: str | os.PathLike,
  mesh: Mesh | None = None,
  checkpoint_every: int | None = None,
  log_every: int = 50,
  eval_fn: Callable[[TrainState], Mapping[str, Any]] | None = None,
  eval_every: int | None = None,
  state_sharding: Any = None,
  max_to_keep: int | None = 2,
  donate: bool = True,
  progress: bool | None = None,
  eval_at_start: bool = False,
) -> tuple[TrainState, list[dict[str, Any]]]:
  """Trains until `state.step == num_steps`, resuming from checkpoints.

  At start, if `<workdir>/checkpoints` holds a checkpoint, the latest one is
  restored (into `state`'s structure, shapes and shardings) and training
  continues from its step; otherwise training starts from `state` (copied,
  so the caller's arrays survive buffer donation). Step `s` (0-based) runs
  `step_fn(state, batches(s))` and yields a state with `step == s + 1`.

  Every `log_every` steps the metrics averaged over the steps since the last
  log are appended to `<workdir>/metrics.jsonl` and TensorBoard (with
  `steps_per_sec` and, at eval steps, `eval_<name>` entries). Every
  `checkpoint_every` steps and at `num_steps` the state is checkpointed.
  Metrics are fetched from the devices only at those steps (so dispatch
  stays asynchronous in between) and checked for NaN/inf before anything is
  saved: a non-finite metric raises `NonFiniteError` naming the first bad
  step and metric, and the last good checkpoint stays the latest.

  Args:
    state: the initial `TrainState` (or any NamedTuple with a `step` field).
    step_fn: pure `step_fn(state, batch) -> (state, metrics)`, metrics a dict
      of scalars; jitted here. It need not touch `state.step`.
    batches: `batches(step) -> batch`, a pytree of `[B, ...]` arrays (the
      global batch; in multi-process runs this process's slice of it).
    num_steps: total number of updates (counted from step 0).
    workdir: the run's folder for checkpoints and metrics.
    mesh: the training mesh (default: `make_mesh()` over all devices).
    checkpoint_every: save every N steps (None: only at the end).
    log_every: log every N steps (and at the end).
    eval_fn: optional `eval_fn(state) -> {name: scalar}`, run every
      `eval_every` steps and at the end.
    eval_every: see `eval_fn` (None: only at the end).
    state_sharding: None (replicate), `'fsdp'` (see `train_state_sharding`)
      or a pytree of shardings matching `state`.
    max_to_keep: checkpoints kept (the latest always is).
    donate: donate the state's buffers to each step (the new state reuses
      them instead of holding a second copy).
    progress: show a tqdm bar (default: when >= 100 steps remain).
    eval_at_start: also run `eval_fn` on the step-0 state of a fresh run
      (logged as the step-0 record; not repeated on resume).

  Returns:
    `(final_state, history)`: `history` lists the logged records
    `{'step': int, name: number}` of the whole run, including those logged
    before a resume.

  Raises:
    NonFiniteError: a metric became NaN or inf.
    ValueError: bad arguments, or the latest checkpoint is past `num_steps`.
  """
  if not callable(batches):
    raise TypeError(
      'fit: batches must be a function batches(step) -> batch (so that a '
      f'resumed run sees the same data); got {type(batches).__name__}.'
    )
  return _fit(
    state,
    step_fn,
    lambda state, step: (batches(step), {}),
    name='fit',
    **_loop_options(locals()),
  )


# The keyword options `fit` and `fit_on_policy` share (see `fit`).
_LOOP_OPTIONS = (
  'num_steps',
  'workdir',
  'mesh',
  'checkpoint_every',
  'log_every',
  'eval_fn',
  'eval_every',
  'state_sharding',
  'max_to_keep',
  'donate',
  'progress',
  'eval_at_start',
)


def _loop_options(scope: Mapping[str, Any]) -> dict[str, Any]:
  return {k: scope[k] for k in _LOOP_OPTIONS}


def fit_on_policy(
  state: TrainState,
  step_fn: StepFn,
  rollout_fn: RolloutFn,
  *,
  num_steps: int,
  workdir: str | os.PathLike,
  mesh: Mesh | None = None,
  checkpoint_every: int | None = None,
  log_every: int = 10,
  eval_fn: Callable[[TrainState], Mapping[str, Any]] | None = None,
  eval_every: int | None = None,
  state_sharding: Any = None,
  max_to_keep: int | None = 2,
  donate: bool = True,
  progress: bool | None = None,
  eval_at_start: bool = False,
) -> tuple[TrainState, list[dict[str, Any]]]:
  """On-policy training: each step's batch is rolled out from the state.

  Step `s` (0-based) calls `batch, rollout_metrics = rollout_fn(state, s)`
  on the current state (the policy after `s` updates), then the jitted
  `step_fn(state, batch)`. Everything else is `fit`'s: resume from the
  latest checkpoint, metric windows, `NonFiniteError` on NaN/inf (in the
  update's metrics or the rollout's), history across resumes, mesh sharding
  of the batch and the state.

  Determinism across a resume needs `rollout_fn` to be a pure function of
  `(state, step)`: derive its sampling key from the step (e.g.
  `jax.random.fold_in(key, step)`) or from `state.rng`, never from a key
  that advances in Python.

  Args:
    state: the initial `TrainState`.
    step_fn: pure `step_fn(state, batch) -> (state, metrics)`; jitted here.
      It may apply several optimizer updates to one batch (PPO epochs);
      `fit_on_policy` advances `state.step` by one per rollout.
    rollout_fn: `rollout_fn(state, step) -> (batch, metrics)`: `batch` a
      pytree of `[B, ...]` arrays (host or device), `metrics` a dict of host
      scalars about the rollout (e.g. `reward_mean`), logged with the
      update's metrics (a name both return is an error).
    num_steps, workdir, mesh, checkpoint_every, log_every, eval_fn,
      eval_every, state_sharding, max_to_keep, donate, progress,
      eval_at_start: as in `fit`.

  Returns:
    `(final_state, history)` as in `fit`.
  """
  if not callable(rollout_fn):
    raise TypeError(
      'fit_on_policy: rollout_fn must be a function rollout_fn(state, step) '
      f'-> (batch, metrics); got {type(rollout_fn).__name__}.'
    )
  return _fit(
    state,
    step_fn,
    rollout_fn,
    name='fit_on_policy',
    **_loop_options(locals()),
  )


def _fit(
  state,
  step_fn,
  rollout_fn,
  *,
  num_steps,
  workdir,
  mesh,
  checkpoint_every,
  log_every,
  eval_fn,
  eval_every,
  state_sharding,
  max_to_keep,
  donate,
  progress,
  eval_at_start,
  name,
):
  """Validation, sharding and resume shared by `fit` and `fit_on_policy`."""
  if not isinstance(num_steps, (int, np.integer)) or num_steps < 0:
    raise ValueError(f'{name}: num_steps={num_steps!r} must be an int >= 0.')
  _check_positive('log_every', log_every)
  _check_positive('checkpoint_every', checkpoint_every, allow_none=True)
  _check_positive('eval_every', eval_every, allow_none=True)
  if not hasattr(state, '_replace') or not hasattr(state, 'step'):
    raise TypeError(
      f'{name}: state must be a TrainState (a NamedTuple with a step field); '
      f'got {type(state).__name__}.'
    )
  workdir = pathlib.Path(workdir)
  mesh = mesh_lib.make_mesh() if mesh is None else mesh

  if state_sharding is None or state_sharding == 'replicated':
    shardings = jax.tree.map(lambda _: mesh_lib.replicated(mesh), state)
  elif isinstance(state_sharding, str):
    if state_sharding != 'fsdp':
      raise ValueError(
        f'{name}: state_sharding={state_sharding!r}; allowed: None, '
        "'replicated', 'fsdp' or a pytree of shardings."
      )
    shardings = train_state_sharding(state, mesh, fsdp=True)
  else:
    shardings = state_sharding

  ckpt = checkpoint_lib.Checkpointer(workdir, max_to_keep=max_to_keep)
  latest = ckpt.latest_step()
  try:
    if latest is not None:
      if latest > num_steps:
        raise ValueError(
          f'{name}: the latest checkpoint in {ckpt.directory} is at step '
          f'{latest}, past num_steps={num_steps}; use num_steps >= {latest} '
          'or a fresh workdir.'
        )
      like = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s),
        state,
        shardings,
      )
      state = ckpt.restore(like=like, step=latest)
      logging.info(
        '%s: resumed from step %d in %s', name, latest, ckpt.directory
      )
    else:
      state = _fresh_copy(state, shardings)
    start = int(jax.device_get(state.step))
    return _run(
      state,
      step_fn,
      rollout_fn,
      start=start,
      resumed=latest is not None,
      num_steps=num_steps,
      workdir=workdir,
      mesh=mesh,
      shardings=shardings,
      ckpt=ckpt,
      checkpoint_every=checkpoint_every,
      log_every=log_every,
      eval_fn=eval_fn,
      eval_every=eval_every,
      donate=donate,
      progress=progress,
      eval_at_start=eval_at_start,
    )
  finally:
    ckpt.close()


def _merge_metrics(update: Mapping[str, Any], rollout: Mapping[str, Any]):
  clash = sorted(set(update) & set(rollout))
  if clash:
    raise ValueError(
      f'fit_on_policy: rollout_fn and step_fn both report {clash}; rename '
      "one side's metrics."
    )
  for k, v in rollout.items():
    if np.shape(v) != ():
      raise ValueError(
        f'fit_on_policy: rollout metric {k!r} has shape {np.shape(v)}; '
        'rollout metrics must be scalars.'
      )
  return {**update, **rollout}


def _run(
  state,
  step_fn,
  rollout_fn,
  *,
  start,
  resumed,
  num_steps,
  workdir,
  mesh,
  shardings,
  ckpt,
  checkpoint_every,
  log_every,
  eval_fn,
  eval_every,
  donate,
  progress,
  eval_at_start,
):
  """The loop proper; see `fit`."""
  writer = metrics_lib.MetricsWriter(
    workdir, resume_step=start if resumed else None
  )
  history = writer.read() if resumed and writer.jsonl_path.exists() else []
  jitted = jax.jit(
    _wrap_step(step_fn),
    out_shardings=(shardings, mesh_lib.replicated(mesh)),
    donate_argnums=(0,) if donate else (),
  )
  bar = metrics_lib.progress_bar(
    num_steps, initial=start, desc=f'fit {workdir.name}', enabled=progress
  )
  stopwatch = metrics_lib.Stopwatch(step=start)
  pending: list[tuple[int, Any]] = []  # (step, device metrics) not checked
  window: list[dict[str, Any]] = []  # checked metrics not yet logged
  stop = contextlib.ExitStack()
  interrupted = stop.enter_context(_stop_at_step_boundary())
  try:
    if eval_at_start and eval_fn is not None and start == 0:
      record = writer.write(
        0, {f'eval_{k}': v for k, v in eval_fn(state).items()}
      )
      history.append(record)
    for s in range(start, num_steps):
      step = s + 1
      batch, rollout_metrics = rollout_fn(state, s)
      state, step_metrics = jitted(state, mesh_lib.shard_batch(batch, mesh))
      if rollout_metrics:
        step_metrics = _merge_metrics(step_metrics, rollout_metrics)
      pending.append((step, step_metrics))
      last = step == num_steps
      halt = interrupted.is_set() and not last
      do_log = step % log_every == 0 or last or halt
      do_ckpt = (
        last or halt or (checkpoint_every and step % checkpoint_every == 0)
      )
      do_eval = eval_fn is not None and (
        last or (eval_every is not None and step % eval_every == 0)
      )
      if not (do_log or do_ckpt or do_eval):
        continue
      host = jax.device_get([m for _, m in pending])
      checked = [(st, m) for (st, _), m in zip(pending, host, strict=True)]
      pending = []
      bad = _first_non_finite(checked)
      if bad is not None:
        ckpt.wait()
        good = ckpt.latest_step()
        detail = (
          f'Nothing was saved after it; the last good checkpoint is step '
          f'{good} in {ckpt.directory}.'
          if good is not None
          else 'No checkpoint was saved.'
        )
        raise NonFiniteError(*bad, detail)
      window.extend(m for _, m in checked)
      record: dict[str, Any] = {}
      if do_log:
        for name in window[0]:
          record[name] = float(np.mean([m[name] for m in window]))
        record['steps_per_sec'] = stopwatch.lap(step)
        window = []
      if do_ckpt:
        ckpt.save(step, state)
      if do_eval:
        for name, value in eval_fn(state).items():
          record[f'eval_{name}'] = value
      if record:
        record = writer.write(step, record)
        history.append(record)
        logging.info(
          'step %d: %s',
          step,
          ', '.join(f'{k}={v:.5g}' for k, v in record.items() if k != 'step'),
        )
      bar.update(step - bar.n)
      if 'loss' in record:
        bar.set_postfix(loss=f'{record["loss"]:.4g}')
      if halt:
        ckpt.wait()
        raise TrainingInterrupted(step, ckpt.directory)
  finally:
    stop.close()
    bar.close()
    writer.close()
  return state, history
