"""Checkpointer round trips and the TrainState / train step helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common import train


def test_restore_preserves_structure_and_values(problem, tmp_path):
  state = problem.make_state()
  state = state._replace(
    step=jnp.asarray(7, jnp.int32),
    extras={'ema': jax.tree.map(lambda p: p * 0.5, state.params)},
  )
  ckpt = train.Checkpointer(tmp_path)
  assert ckpt.latest_step() is None
  assert ckpt.save(7, state)
  assert not ckpt.save(7, state)  # already there: not written twice
  ckpt.wait()

  restored = train.Checkpointer(tmp_path).restore(like=state)
  assert type(restored) is train.TrainState
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  # optax's NamedTuple states come back as the same NamedTuple types.
  adam_state = restored.opt_state[0]
  assert type(adam_state) is optax.ScaleByAdamState
  assert type(adam_state) is type(state.opt_state[0])
  assert jax.dtypes.issubdtype(restored.rng.dtype, jax.dtypes.prng_key)
  for a, b in zip(
    jax.tree.leaves(restored), jax.tree.leaves(state), strict=True
  ):
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      a, b = jax.random.key_data(a), jax.random.key_data(b)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_restore_into_sharding_and_missing_step(problem, tmp_path):
  state = problem.make_state()
  ckpt = train.Checkpointer(tmp_path, async_save=False)
  ckpt.save(3, state)
  mesh = train.make_mesh(data=4, fsdp=2)
  sharding = train.train_state_sharding(state, mesh, fsdp=True, min_size=0)
  like = jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
    state,
    sharding,
  )
  restored = ckpt.restore(like=like)
  kernel = restored.params['l1']['kernel'][...]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, 'fsdp')
  np.testing.assert_array_equal(kernel, state.params['l1']['kernel'][...])
  with pytest.raises(
    FileNotFoundError, match=r'step 5 .* available steps: \[3\]'
  ):
    ckpt.restore(like=state, step=5)
  with pytest.raises(ValueError, match='max_to_keep=0'):
    train.Checkpointer(tmp_path, max_to_keep=0)


def test_train_state_create():
  params = {'w': jnp.ones((2, 3))}
  tx = optax.sgd(0.1, momentum=0.9)
  state = train.TrainState.create(params, tx, rng=3)
  assert state.step.dtype == jnp.int32 and int(state.step) == 0
  assert state.extras is None
  np.testing.assert_array_equal(
    jax.random.key_data(state.rng), jax.random.key_data(jax.random.key(3))
  )
  assert jax.tree.structure(state.opt_state) == jax.tree.structure(
    tx.init(params)
  )


def test_make_train_step_matches_hand_computed_sgd():
  # loss(w) = mean((w * x - y)^2) with x = [1, 2], y = [3, 2], w = 1:
  #   residuals r = [-2, 0], loss = (4 + 0) / 2 = 2,
  #   dloss/dw = mean(2 * r * x) = (2*-2*1 + 0) / 2 = -2,
  #   sgd(0.5): w' = 1 - 0.5 * -2 = 2.
  def loss_fn(params, batch, rng):
    del rng
    return jnp.mean((params['w'] * batch['x'] - batch['y']) ** 2)

  tx = optax.sgd(0.5)
  step_fn = train.make_train_step(loss_fn, tx)
  state = train.TrainState.create({'w': jnp.asarray(1.0)}, tx, rng=0)
  batch = {'x': jnp.array([1.0, 2.0]), 'y': jnp.array([3.0, 2.0])}
  new_state, m = jax.jit(step_fn)(state, batch)
  # Small integers and halves throughout (sqrt(4) included): float32 holds
  # every intermediate exactly.
  assert float(m['loss']) == 2.0
  assert float(m['grad_norm']) == 2.0
  assert float(new_state.params['w']) == 2.0
  assert float(m['param_norm']) == 2.0
  # The key advances: the next step draws fresh randomness.
  assert not np.array_equal(
    jax.random.key_data(new_state.rng), jax.random.key_data(state.rng)
  )


def test_make_train_step_aux_and_clash():
  def loss_fn(params, batch, rng):
    del batch, rng
    return params['w'] ** 2, {'acc': jnp.asarray(0.5)}

  tx = optax.sgd(0.1)
  state = train.TrainState.create({'w': jnp.asarray(2.0)}, tx)
  _, m = train.make_train_step(loss_fn, tx, has_aux=True)(state, None)
  assert float(m['acc']) == 0.5 and float(m['loss']) == 4.0

  def clashing(params, batch, rng):
    return params['w'] ** 2, {'loss': params['w']}

  with pytest.raises(ValueError, match=r"\['loss'\] clash"):
    train.make_train_step(clashing, tx, has_aux=True)(state, None)
