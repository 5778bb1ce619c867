"""fit: sharding equivalence, exact resume, non-finite stop, logging."""

import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from common import metrics
from common import train
from tests import tolerances as tol


def _assert_trees_equal(a, b):
  """Bit-identical trees (the same program on the same machine)."""
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_sharded_loss_and_grads_match_single_device(problem):
  state = problem.make_state()
  batch = problem.batches(0)
  grad_fn = jax.jit(jax.value_and_grad(problem.loss_fn))
  key = jax.random.key(0)

  mesh1 = train.make_mesh(devices=jax.devices()[:1])
  loss1, g1 = grad_fn(
    train.replicate(state.params, mesh1), train.shard_batch(batch, mesh1), key
  )
  mesh8 = train.make_mesh()
  assert mesh8.shape == {'data': 8, 'fsdp': 1}
  sharded = train.shard_batch(batch, mesh8)
  assert len(sharded['x'].addressable_shards) == 8
  assert sharded['x'].addressable_shards[0].data.shape == (2, 4)
  loss8, g8 = grad_fn(train.replicate(state.params, mesh8), sharded, key)

  # The 8-way sharded program sums the batch in another order: float32
  # rounding of a 32-term mean and of the per-leaf gradient sums.
  tol.assert_close(loss8, loss1, tol.FEW_OPS)
  tol.assert_trees_close(g8, g1, tol.FEW_OPS)
  # Non-trivial gradients: the comparison is not vacuous.
  assert float(jnp.abs(g1['l1']['kernel'][...]).max()) > 1e-3


def test_fit_data_and_fsdp_sharded_match_single_device(problem, tmp_path):
  kwargs = dict(num_steps=3, log_every=1, checkpoint_every=None)
  s1, h1 = train.fit(
    problem.make_state(),
    problem.step_fn,
    problem.batches,
    workdir=tmp_path / 'one',
    mesh=train.make_mesh(devices=jax.devices()[:1]),
    **kwargs,
  )
  s8, h8 = train.fit(
    problem.make_state(),
    problem.step_fn,
    problem.batches,
    workdir=tmp_path / 'eight',
    mesh=train.make_mesh(),
    **kwargs,
  )
  mesh_fsdp = train.make_mesh(data=4, fsdp=2)
  init = problem.make_state()
  sharding = train.train_state_sharding(init, mesh_fsdp, fsdp=True, min_size=0)
  sf, hf = train.fit(
    init,
    problem.step_fn,
    problem.batches,
    workdir=tmp_path / 'fsdp',
    mesh=mesh_fsdp,
    state_sharding=sharding,
    **kwargs,
  )
  # The fsdp run really splits parameters: kernel [4, 16] on its 16-axis.
  kernel = sf.params['l1']['kernel'][...]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, 'fsdp')
  assert kernel.addressable_shards[0].data.shape == (4, 8)
  for s, h in ((s8, h8), (sf, hf)):
    assert int(s.step) == 3
    # Another summation order; 3 Adam steps carry the rounding of the
    # gradients into the parameters (each step moves them by ~lr).
    tol.assert_trees_close(s.params, s1.params, tol.FEW_OPS)
    tol.assert_close(
      [r['loss'] for r in h], [r['loss'] for r in h1], tol.FEW_OPS
    )
  # Training moved the parameters.
  init_params = problem.make_state().params
  assert not np.allclose(
    s1.params['l2']['kernel'][...], init_params['l2']['kernel'][...]
  )


def test_resume_after_crash_gives_identical_run(problem, tmp_path):
  kwargs = dict(num_steps=6, checkpoint_every=2, log_every=1)
  full, full_hist = train.fit(
    problem.make_state(),
    problem.step_fn,
    problem.batches,
    workdir=tmp_path / 'full',
    **kwargs,
  )

  def crashing_batches(step):
    if step == 5:  # after step 5 ran and was logged, before step 6
      raise RuntimeError('simulated crash')
    return problem.batches(step)

  workdir = tmp_path / 'crashed'
  with pytest.raises(RuntimeError, match='simulated crash'):
    train.fit(
      problem.make_state(),
      problem.step_fn,
      crashing_batches,
      workdir=workdir,
      **kwargs,
    )
  assert train.Checkpointer(workdir).all_steps() == [2, 4]
  assert [r['step'] for r in metrics.read_jsonl(workdir / 'metrics.jsonl')] == [
    1,
    2,
    3,
    4,
    5,
  ]

  resumed, hist = train.fit(
    problem.make_state(),
    problem.step_fn,
    problem.batches,
    workdir=workdir,
    **kwargs,
  )
  assert int(resumed.step) == 6
  _assert_trees_equal(resumed.params, full.params)
  _assert_trees_equal(resumed.opt_state, full.opt_state)
  np.testing.assert_array_equal(
    jax.random.key_data(resumed.rng), jax.random.key_data(full.rng)
  )
  # Step 5 was recomputed, not logged twice; history matches exactly.
  assert [r['step'] for r in hist] == [1, 2, 3, 4, 5, 6]
  assert [r['loss'] for r in hist] == [r['loss'] for r in full_hist]
  on_disk = metrics.read_jsonl(workdir / 'metrics.jsonl')
  assert [r['loss'] for r in on_disk] == [r['loss'] for r in full_hist]
  # max_to_keep=2 keeps the two latest.
  assert train.Checkpointer(workdir).all_steps() == [4, 6]


def test_fit_with_interrupted_num_steps(problem, tmp_path):
  """The brief's variant: run 4 steps, then call again with num_steps=6."""
  kwargs = dict(checkpoint_every=2, log_every=2)
  full, _ = train.fit(
    problem.make_state(),
    problem.step_fn,
    problem.batches,
    num_steps=6,
    workdir=tmp_path / 'a',
    **kwargs,
  )
  train.fit(
    problem.make_state(),
    problem.step_fn,
    problem.batches,
    num_steps=4,
    workdir=tmp_path / 'b',
    **kwargs,
  )
  resumed, _ = train.fit(
    problem.make_state(),
    problem.step_fn,
    problem.batches,
    num_steps=6,
    workdir=tmp_path / 'b',
    **kwargs,
  )
  _assert_trees_equal(resumed.params, full.params)
  with pytest.raises(ValueError, match='at step 6, past num_steps=4'):
    train.fit(
      problem.make_state(),
      problem.step_fn,
      problem.batches,
      num_steps=4,
      workdir=tmp_path / 'b',
    )


def test_non_finite_loss_names_step_and_keeps_good_checkpoint(
  problem, tmp_path
):
  def poisoned(step):
    batch = problem.batches(step)
    if step == 3:  # produces step 4
      batch['x'][0, 0] = np.nan
    return batch

  with pytest.raises(train.NonFiniteError) as info:
    train.fit(
      problem.make_state(),
      problem.step_fn,
      poisoned,
      num_steps=8,
      workdir=tmp_path,
      checkpoint_every=2,
      log_every=5,
    )
  err = info.value
  assert (err.step, err.metric) == (4, 'loss')
  assert np.isnan(err.value)
  assert "'loss' = nan at step 4" in str(err)
  assert 'last good checkpoint is step 2' in str(err)
  assert train.Checkpointer(tmp_path).all_steps() == [2]


def _read_tb_scalars(event_dir):
  """{tag: [(step, value)]} from TFRecord event files (no TF needed)."""
  out = {}
  for path in sorted(event_dir.glob('events.out.tfevents.*')):
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack('<Q', data[pos : pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
      pos += 12 + length + 4
      for v in event.summary.value:
        out.setdefault(v.tag, []).append((event.step, v.simple_value))
  return out


def test_metrics_jsonl_and_tensorboard_written(problem, tmp_path):
  evals = []

  def eval_fn(state):
    evals.append(int(state.step))
    return {'loss': problem.loss_fn(state.params, problem.batches(99), None)}

  _, hist = train.fit(
    problem.make_state(),
    problem.step_fn,
    problem.batches,
    num_steps=5,
    workdir=tmp_path,
    log_every=2,
    eval_fn=eval_fn,
    eval_every=4,
  )
  assert evals == [4, 5]
  records = metrics.read_jsonl(tmp_path / 'metrics.jsonl')
  assert records == hist
  assert [r['step'] for r in records] == [2, 4, 5]
  assert set(records[1]) == {
    'step',
    'loss',
    'grad_norm',
    'param_norm',
    'steps_per_sec',
    'eval_loss',
  }
  assert 'eval_loss' not in records[0]
  tb = _read_tb_scalars(tmp_path / 'tensorboard')
  assert [s for s, _ in tb['loss']] == [2, 4, 5]
  # TensorBoard stores float32; the JSONL holds the float64 of the same
  # float32 value, so a float32 rounding apart at most.
  tol.assert_close([v for _, v in tb['loss']], [r['loss'] for r in records])
  assert [s for s, _ in tb['eval_loss']] == [4, 5]


def test_logged_loss_is_window_mean(problem, tmp_path):
  _, per_step = train.fit(
    problem.make_state(),
    problem.step_fn,
    problem.batches,
    num_steps=4,
    workdir=tmp_path / 'a',
    log_every=1,
  )
  _, windowed = train.fit(
    problem.make_state(),
    problem.step_fn,
    problem.batches,
    num_steps=4,
    workdir=tmp_path / 'b',
    log_every=2,
  )
  losses = [r['loss'] for r in per_step]
  # The same per-step losses (same program), averaged in float32 vs float64.
  tol.assert_close(
    [r['loss'] for r in windowed],
    [np.mean(losses[:2]), np.mean(losses[2:])],
  )


def test_fit_rejects_bad_arguments(problem, tmp_path):
  state = problem.make_state()
  with pytest.raises(ValueError, match='num_steps=-1'):
    train.fit(
      state, problem.step_fn, problem.batches, num_steps=-1, workdir=tmp_path
    )
  with pytest.raises(ValueError, match='log_every=0'):
    train.fit(
      state,
      problem.step_fn,
      problem.batches,
      num_steps=1,
      workdir=tmp_path,
      log_every=0,
    )
  with pytest.raises(TypeError, match='batches must be a function'):
    train.fit(
      state,
      problem.step_fn,
      [problem.batches(0)],
      num_steps=1,
      workdir=tmp_path,
    )
  with pytest.raises(ValueError, match="state_sharding='zero'"):
    train.fit(
      state,
      problem.step_fn,
      problem.batches,
      num_steps=1,
      workdir=tmp_path,
      state_sharding='zero',
    )

  def vector_metric(state, batch):
    return state, {'per_example': batch['x'][:, 0]}

  with pytest.raises(ValueError, match="'per_example' has shape"):
    train.fit(
      problem.make_state(),
      vector_metric,
      problem.batches,
      num_steps=1,
      workdir=tmp_path / 'v',
    )


def test_fit_with_extras_fsdp_string_and_progress(problem, tmp_path, capsys):
  def step_fn(state, batch):
    state, m = problem.step_fn(state, batch)
    count = state.extras['count'] + 1.0
    return state._replace(extras={'count': count}), {**m, 'count': count}

  init = problem.make_state()._replace(extras={'count': jnp.zeros(())})
  final, hist = train.fit(
    init,
    step_fn,
    problem.batches,
    num_steps=3,
    workdir=tmp_path,
    mesh=train.make_mesh(fsdp=2),
    state_sharding='fsdp',
    log_every=3,
    progress=True,
  )
  assert float(final.extras['count']) == 3.0
  assert hist[-1]['count'] == 2.0  # mean of 1, 2, 3
  # The caller's initial state was copied, not donated.
  assert float(init.extras['count']) == 0.0
  assert '3/3' in capsys.readouterr().err
