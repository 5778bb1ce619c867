"""Tests for common.optim.factory: config validation, schedules, updates."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from common import optim
from tests import tolerances as tol


def _params():
  return {
    'dense': {'kernel': jnp.full((2, 2), 2.0), 'bias': jnp.full((2,), 2.0)},
    'embed': {'embedding': jnp.full((3, 2), 2.0)},
  }


def _zeros_like(tree):
  return jax.tree.map(jnp.zeros_like, tree)


def test_config_errors_list_allowed_values():
  with pytest.raises(ValueError, match="Unknown optimizer name 'adamx'.*lion"):
    optim.make_optimizer({'name': 'adamx', 'learning_rate': 1e-3})
  with pytest.raises(ValueError, match=r"key\(s\) \['lr'\].*learning_rate"):
    optim.make_optimizer({'name': 'adam', 'lr': 1e-3})
  with pytest.raises(ValueError, match='needs learning_rate'):
    optim.make_optimizer({'name': 'adam'})
  with pytest.raises(ValueError, match="do not apply to 'sgd'.*momentum"):
    optim.make_optimizer({'name': 'sgd', 'learning_rate': 0.1, 'b2': 0.9})
  with pytest.raises(ValueError, match='learning_rate=-1.0 must be > 0'):
    optim.make_optimizer({'name': 'sgd', 'learning_rate': -1.0})
  with pytest.raises(ValueError, match="Unknown schedule 'cosine'"):
    optim.make_optimizer(
      {'name': 'sgd', 'learning_rate': 0.1, 'schedule': 'cosine'}
    )
  with pytest.raises(ValueError, match='needs total_steps > warmup_steps=10'):
    optim.make_schedule(
      {'learning_rate': 1.0, 'schedule': 'linear', 'warmup_steps': 10}
    )
  with pytest.raises(ValueError, match="weight_decay_mask=3; allowed: 'def"):
    optim.make_optimizer(
      {'name': 'adamw', 'learning_rate': 0.1, 'weight_decay_mask': 3}
    )


def test_schedules_hand_values():
  cos = optim.make_schedule(
    {
      'learning_rate': 1.0,
      'schedule': 'warmup_cosine',
      'warmup_steps': 10,
      'total_steps': 110,
      'end_learning_rate_factor': 0.1,
    }
  )
  # Warmup 0 -> 1 over 10 steps, then 0.1 + 0.9 * (1 + cos(pi s/100)) / 2.
  # float32 cos of a float32 phase: the learning rate (1.0) sets the scale.
  tol.assert_close(
    [cos(0), cos(5), cos(10), cos(60), cos(110)],
    [0.0, 0.5, 1.0, 0.1 + 0.9 * 0.5, 0.1],
  )
  tol.assert_close(cos(35), 0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
  lin = optim.make_schedule(
    {
      'learning_rate': 2.0,
      'schedule': 'linear',
      'warmup_steps': 4,
      'total_steps': 12,
    }
  )
  tol.assert_close(
    [lin(0), lin(2), lin(4), lin(8), lin(12), lin(20)],
    [0.0, 1.0, 2.0, 1.0, 0.0, 0.0],
  )
  const = optim.make_schedule({'learning_rate': 0.5, 'warmup_steps': 2})
  tol.assert_close([const(0), const(1), const(5)], [0.0, 0.25, 0.5])


def test_adamw_decoupled_decay_uses_default_mask():
  # Zero gradients: Adam's update is 0, only decay -lr * wd * p remains,
  # and only on the 2-D non-embedding leaf.
  tx = optim.make_optimizer(
    {'name': 'adamw', 'learning_rate': 0.5, 'weight_decay': 0.1}
  )
  params = _params()
  updates, _ = tx.update(_zeros_like(params), tx.init(params), params)
  tol.assert_close(updates['dense']['kernel'], -0.5 * 0.1 * 2.0)
  # Masked-out leaves: Adam's 0 / (sqrt(0) + eps) is exactly 0.
  np.testing.assert_array_equal(updates['dense']['bias'], 0.0)
  np.testing.assert_array_equal(updates['embed']['embedding'], 0.0)


def test_adamw_matches_optax_and_accepts_configdict():
  config = ml_collections.ConfigDict(
    {'name': 'adamw', 'learning_rate': 1e-2, 'b1': 0.8, 'eps': 1e-6}
  )
  tx = optim.make_optimizer(config)
  ref = optax.adamw(1e-2, b1=0.8, eps=1e-6, weight_decay=0.0)
  params = _params()
  grads = jax.tree.map(lambda p: jnp.arange(p.size).reshape(p.shape), params)
  grads = jax.tree.map(lambda g: g.astype(jnp.float32) - 1.5, grads)
  ours, _ = tx.update(grads, tx.init(params), params)
  theirs, _ = ref.update(grads, ref.init(params), params)
  # The same optax chain in both: float32 rounding of lr-sized updates.
  tol.assert_trees_close(ours, theirs, tol.ROUNDING, scale=1e-2)


def test_sgd_coupled_decay_custom_mask_and_clipping():
  tx = optim.make_optimizer(
    {
      'name': 'sgd',
      'learning_rate': 0.5,
      'weight_decay': 0.1,
      'weight_decay_mask': ['embed/.*'],
    }
  )
  params = _params()
  updates, _ = tx.update(_zeros_like(params), tx.init(params), params)
  # Coupled L2: g += wd * p = 0.2 on the embedding, update = -lr * g.
  tol.assert_close(updates['embed']['embedding'], -0.1)
  np.testing.assert_array_equal(updates['dense']['kernel'], 0.0)  # -lr * 0
  clipped = optim.make_optimizer(
    {'name': 'sgd', 'learning_rate': 1.0, 'grad_clip_norm': 1.0}
  )
  grads = {'a': jnp.array([6.0, 8.0])}  # global norm 10
  updates, _ = clipped.update(grads, clipped.init(grads))
  tol.assert_close(updates['a'], [-0.6, -0.8])


@pytest.mark.parametrize('name', optim.OPTIMIZERS)
def test_every_optimizer_minimises_a_quadratic(name):
  lr = 0.05 if name == 'lion' else 0.1  # Lion moves lr per step (sign)
  tx = optim.make_optimizer(
    {'name': name, 'learning_rate': lr, 'grad_clip_norm': 10.0}
  )
  params = {'w': jnp.array([3.0, -2.0])}
  loss = lambda p: jnp.sum(jnp.square(p['w']))

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  start = loss(params)
  for _ in range(20):
    params, state = step(params, state)
  assert loss(params) < 0.8 * start
