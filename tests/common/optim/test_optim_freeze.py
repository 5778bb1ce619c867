"""Freezing by path on an NNX model with a real adamw chain."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from common import optim


class MLP(nnx.Module):
  def __init__(self, rngs):
    self.layers = nnx.List(
      [nnx.Linear(3, 8, rngs=rngs), nnx.Linear(8, 8, rngs=rngs)]
    )
    self.norm = nnx.RMSNorm(8, rngs=rngs)
    self.head = nnx.Linear(8, 1, rngs=rngs)

  def __call__(self, x):
    for layer in self.layers:
      x = jax.nn.tanh(layer(x))
    return self.head(self.norm(x))


def _setup():
  graphdef, params = nnx.split(MLP(nnx.Rngs(0)), nnx.Param)
  x = jax.random.normal(jax.random.key(1), (16, 3))
  y = jnp.sin(x.sum(-1, keepdims=True))
  return graphdef, params, x, y


def _train(tx, graphdef, params, x, y, steps=5):
  def loss_fn(p):
    return jnp.mean(jnp.square(nnx.merge(graphdef, p)(x) - y))

  @jax.jit
  def step(p, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  opt_state = tx.init(params)
  losses = []
  for _ in range(steps):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  return params, losses


def _changed(before, after):
  flat_b, _ = jax.tree_util.tree_flatten_with_path(before)
  flat_a = jax.tree.leaves(after)
  return {
    optim.path_str(p): not np.array_equal(b, a)
    for (p, b), a in zip(flat_b, flat_a, strict=True)
  }


ADAMW = dict(learning_rate=1e-2, weight_decay=0.5, grad_clip_norm=1.0)
FROZEN = ['layers/0/.*', 'norm/.*']
EXPECTED = {
  'head/bias': True,
  'head/kernel': True,
  'layers/0/bias': False,
  'layers/0/kernel': False,
  'layers/1/bias': True,
  'layers/1/kernel': True,
  'norm/scale': False,
}


def test_with_frozen_keeps_frozen_leaves_exactly():
  graphdef, params, x, y = _setup()
  tx = optax.chain(
    optax.clip_by_global_norm(1.0),
    optax.adamw(1e-2, weight_decay=0.5, mask=optim.default_weight_decay_mask),
  )
  tx = optim.with_frozen(tx, params, FROZEN)
  new, losses = _train(tx, graphdef, params, x, y)
  assert _changed(params, new) == EXPECTED
  assert losses[-1] < losses[0]


def test_freeze_chained_after_adamw_blocks_weight_decay():
  graphdef, params, x, y = _setup()
  mask = optim.path_mask(params, FROZEN)
  # Full weight decay on every leaf: only set_to_zero after it stops it.
  tx = optax.chain(optax.adamw(1e-2, weight_decay=0.5), optim.freeze(mask))
  new, _ = _train(tx, graphdef, params, x, y)
  assert _changed(params, new) == EXPECTED


def test_make_optimizer_frozen_config():
  graphdef, params, x, y = _setup()
  tx = optim.make_optimizer(dict(name='adamw', frozen=FROZEN, **ADAMW))
  new, losses = _train(tx, graphdef, params, x, y)
  assert _changed(params, new) == EXPECTED
  assert losses[-1] < losses[0]


def test_bare_masked_does_not_freeze():
  # The pitfall freeze() avoids: optax.masked(tx, trainable) passes the raw
  # gradients of the other leaves through, so they move (upwards).
  graphdef, params, x, y = _setup()
  trainable = jax.tree.map(lambda m: not m, optim.path_mask(params, FROZEN))
  tx = optax.masked(optax.adamw(1e-2), trainable)
  new, _ = _train(tx, graphdef, params, x, y, steps=1)
  assert _changed(params, new)['layers/0/kernel']


def test_unmatched_freeze_pattern_raises():
  _, params, _, _ = _setup()
  with pytest.raises(ValueError, match=r"\['encoder/.\*'\] match no param"):
    optim.with_frozen(optax.adamw(1e-2), params, ['encoder/.*'])
  tx = optim.make_optimizer(
    {'name': 'adam', 'learning_rate': 0.1, 'frozen': 'encoder/.*'}
  )
  with pytest.raises(ValueError, match='Available paths: head/bias'):
    tx.init(params)


class FreezeVariantsTest(chex.TestCase):
  """The freezing transforms' updates under jit and without."""

  def _tree(self):
    return {
      'embed': {'embedding': jnp.array([[1.0, -2.0], [3.0, 0.5]])},
      'head': {'kernel': jnp.array([0.25, -4.0])},
    }

  @chex.variants(with_jit=True, without_jit=True)
  def test_freeze_zeroes_masked_and_passes_the_rest(self):
    grads = self._tree()
    tx = optim.freeze(optim.path_mask(grads, ['embed/.*']))
    updates, _ = self.variant(tx.update)(grads, tx.init(grads))
    chex.assert_trees_all_equal_shapes_and_dtypes(updates, grads)
    # Frozen leaves are the constant 0; the others are the inputs, untouched.
    chex.assert_trees_all_equal(
      updates['embed']['embedding'], jnp.zeros((2, 2))
    )
    chex.assert_trees_all_equal(updates['head'], grads['head'])

  @chex.variants(with_jit=True, without_jit=True)
  def test_with_frozen_sgd_hand_case(self):
    grads = self._tree()
    tx = optim.with_frozen(optax.sgd(0.5), grads, 'embed/.*')
    updates, _ = self.variant(tx.update)(grads, tx.init(grads))
    chex.assert_trees_all_equal(
      updates['embed']['embedding'], jnp.zeros((2, 2))
    )
    # -0.5 * g of dyadic gradients: exact in float32.
    chex.assert_trees_all_equal(
      updates['head']['kernel'], jnp.array([-0.125, 2.0])
    )
