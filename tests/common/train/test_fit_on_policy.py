"""Tests for `common.train.fit_on_policy`: rollouts that see the state."""

import os
import signal
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common import train


def _rollout_from(problem, log):
  """A rollout whose batch depends on the current parameters.

  The targets are the model's own predictions on fresh inputs, shifted by
  a step-dependent offset, so the batch of step `s` differs whenever the
  parameters after `s` updates differ: a loop that handed the rollout stale
  parameters would end elsewhere.
  """

  def rollout_fn(state, step):
    log.append((step, int(jax.device_get(state.step))))
    x = np.random.default_rng(step).normal(size=(16, 4)).astype(np.float32)
    pred = nnx.merge(problem.graphdef, state.params)(jnp.asarray(x))
    y = np.asarray(pred) + np.float32(0.1 * (step + 1))
    return {'x': x, 'y': y}, {'target_shift': 0.1 * (step + 1)}

  return rollout_fn


def test_rollout_sees_the_state_of_its_step(problem, tmp_path):
  log = []
  _, hist = train.fit_on_policy(
    problem.make_state(),
    problem.step_fn,
    _rollout_from(problem, log),
    num_steps=4,
    workdir=tmp_path,
    log_every=1,
    progress=False,
  )
  assert log == [(0, 0), (1, 1), (2, 2), (3, 3)]
  # Rollout metrics are logged beside the update's (window means).
  np.testing.assert_allclose(
    [h['target_shift'] for h in hist], [0.1, 0.2, 0.3, 0.4], rtol=1e-6
  )
  assert all('loss' in h and 'grad_norm' in h for h in hist)


def test_kill_and_resume_gives_identical_final_state(problem, tmp_path):
  kw = dict(num_steps=6, log_every=1, checkpoint_every=2, progress=False)
  full, hist = train.fit_on_policy(
    problem.make_state(),
    problem.step_fn,
    _rollout_from(problem, []),
    workdir=tmp_path / 'a',
    **kw,
  )
  inner = _rollout_from(problem, [])

  def killed(state, step):
    if step == 5:
      raise KeyboardInterrupt('killed')
    return inner(state, step)

  with pytest.raises(KeyboardInterrupt):
    train.fit_on_policy(
      problem.make_state(),
      problem.step_fn,
      killed,
      workdir=tmp_path / 'b',
      **kw,
    )
  log = []
  resumed, hist_b = train.fit_on_policy(
    problem.make_state(),
    problem.step_fn,
    _rollout_from(problem, log),
    workdir=tmp_path / 'b',
    **kw,
  )
  assert log == [(4, 4), (5, 5)]  # resumed from the step-4 checkpoint
  jax.tree.map(np.testing.assert_array_equal, full.params, resumed.params)
  jax.tree.map(np.testing.assert_array_equal, full.opt_state, resumed.opt_state)
  timeless = lambda h: [
    {k: v for k, v in r.items() if k != 'steps_per_sec'} for r in h
  ]
  assert timeless(hist_b) == timeless(hist)


def test_eval_at_start_logs_step_zero_once(problem, tmp_path):
  def eval_fn(state):
    return {'param_sum': sum(jnp.sum(x) for x in jax.tree.leaves(state.params))}

  kw = dict(num_steps=2, log_every=1, eval_fn=eval_fn, progress=False)
  rollout = _rollout_from(problem, [])
  _, hist = train.fit_on_policy(
    problem.make_state(),
    problem.step_fn,
    rollout,
    workdir=tmp_path,
    eval_at_start=True,
    **kw,
  )
  assert [h['step'] for h in hist if 'eval_param_sum' in h] == [0, 2]
  assert hist[0] == {'step': 0, 'eval_param_sum': hist[0]['eval_param_sum']}


def test_rollout_metric_clash_and_shape_are_errors(problem, tmp_path):
  def clash(state, step):
    batch, _ = _rollout_from(problem, [])(state, step)
    return batch, {'loss': 1.0}

  with pytest.raises(ValueError, match=r"both report \['loss'\]"):
    train.fit_on_policy(
      problem.make_state(),
      problem.step_fn,
      clash,
      num_steps=1,
      workdir=tmp_path / 'a',
      progress=False,
    )

  def vector(state, step):
    batch, _ = _rollout_from(problem, [])(state, step)
    return batch, {'rewards': np.ones(3)}

  with pytest.raises(ValueError, match="rollout metric 'rewards' has shape"):
    train.fit_on_policy(
      problem.make_state(),
      problem.step_fn,
      vector,
      num_steps=1,
      workdir=tmp_path / 'b',
      progress=False,
    )
  with pytest.raises(TypeError, match='rollout_fn must be a function'):
    train.fit_on_policy(
      problem.make_state(),
      problem.step_fn,
      [1, 2],
      num_steps=1,
      workdir=tmp_path / 'c',
    )


def test_non_finite_rollout_metric_stops_the_run(problem, tmp_path):
  inner = _rollout_from(problem, [])

  def bad(state, step):
    batch, _ = inner(state, step)
    return batch, {'reward_mean': float('nan') if step == 2 else 0.5}

  with pytest.raises(
    train.NonFiniteError, match="'reward_mean' = nan at step 3"
  ):
    train.fit_on_policy(
      problem.make_state(),
      problem.step_fn,
      bad,
      num_steps=4,
      workdir=tmp_path,
      log_every=1,
      checkpoint_every=1,
      progress=False,
    )
  assert train.Checkpointer(tmp_path).latest_step() == 2


@pytest.mark.skipif(
  threading.current_thread() is not threading.main_thread(),
  reason='signals reach only the main thread',
)
def test_ctrl_c_stops_at_a_step_boundary_with_a_checkpoint(problem, tmp_path):
  kw = dict(num_steps=6, log_every=4, checkpoint_every=None, progress=False)
  before = signal.getsignal(signal.SIGINT)  # SIG_IGN under `cmd &` shells
  full, _ = train.fit_on_policy(
    problem.make_state(),
    problem.step_fn,
    _rollout_from(problem, []),
    workdir=tmp_path / 'a',
    **kw,
  )
  inner = _rollout_from(problem, [])

  def ctrl_c_during_step_2(state, step):
    if step == 2:
      os.kill(os.getpid(), signal.SIGINT)
    return inner(state, step)

  with pytest.raises(train.TrainingInterrupted, match='stopped at step 3'):
    train.fit_on_policy(
      problem.make_state(),
      problem.step_fn,
      ctrl_c_during_step_2,
      workdir=tmp_path / 'b',
      **kw,
    )
  assert signal.getsignal(signal.SIGINT) is before  # the handler restored
  assert train.Checkpointer(tmp_path / 'b').latest_step() == 3
  log = []
  resumed, hist = train.fit_on_policy(
    problem.make_state(),
    problem.step_fn,
    _rollout_from(problem, log),
    workdir=tmp_path / 'b',
    **kw,
  )
  assert [s for s, _ in log] == [3, 4, 5]
  jax.tree.map(np.testing.assert_array_equal, full.params, resumed.params)
  # The interrupted window was logged at the stop, nothing was lost.
  assert [h['step'] for h in hist] == [3, 4, 6]
