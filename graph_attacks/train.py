"""Supervised node classification: one jitted `lax.scan` over epochs.

The model is split once (`nnx.split`); the whole training run, including
the best-validation selection, is a single compiled function of
`(params, graph, labels, masks, key, learning_rate, weight_decay)`, cached
per shape and epoch count: hyperparameters are traced arguments, never
static ones.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import optax
from flax import nnx


def masked_cross_entropy(
  logits: jax.Array, labels: jax.Array, mask: jax.Array
) -> jax.Array:
  """Mean softmax cross-entropy over nodes with `mask` > 0.

  Args:
    logits: `[N, C]`.
    labels: int `[N]`.
    mask: `[N]` non-negative weights (0 = excluded).

  Returns:
    Scalar sum_i m_i CE_i / max(sum_i m_i, 1e-12).
  """
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  mask = mask.astype(logits.dtype)
  return (ce * mask).sum() / jnp.maximum(mask.sum(), 1e-12)


def masked_accuracy(logits, labels, mask) -> jax.Array:
  """Fraction of masked nodes whose argmax equals the label."""
  mask = mask.astype(jnp.float32)
  hit = (logits.argmax(-1) == labels).astype(jnp.float32)
  return (hit * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def unlearning_penalty(logits, labels, mask) -> jax.Array:
  """RIGBD's term: mean softmax probability of `labels` over `mask` nodes."""
  p = jnp.take_along_axis(jax.nn.softmax(logits), labels[:, None], 1)[:, 0]
  mask = mask.astype(p.dtype)
  return (p * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def adam_l2(learning_rate, weight_decay) -> optax.GradientTransformation:
  """Adam with L2 weight decay added to the gradient (torch `Adam` style).

  Both hyperparameters may be traced scalars (build the optimizer inside
  the jitted function from array arguments: one compilation serves every
  value).
  """
  return optax.chain(
    optax.add_decayed_weights(weight_decay), optax.adam(learning_rate)
  )


def hyperparameter(value) -> jax.Array:
  """A float32 scalar array: how hyperparameters enter jitted functions."""
  return jnp.asarray(value, jnp.float32)


def scan_fit(loss_fn, tx: optax.GradientTransformation, state, key, epochs):
  """Full-batch training as one `lax.scan`: `epochs` optax steps.

  Args:
    loss_fn: `loss_fn(state, key) -> scalar`, pure in `state` (a pytree).
    tx: the optimizer.
    state: initial parameters.
    key: PRNG key; each epoch gets its own split.
    epochs: number of steps.

  Returns:
    `(final state, losses [epochs])`.
  """

  def step(carry, k):
    st, opt = carry
    loss, g = jax.value_and_grad(loss_fn)(st, k)
    upd, opt = tx.update(g, opt, st)
    return (optax.apply_updates(st, upd), opt), loss

  (st, _), losses = jax.lax.scan(
    step, (state, tx.init(state)), jax.random.split(key, epochs)
  )
  return st, losses


@functools.partial(jax.jit, static_argnames=('graphdef', 'epochs'))
def _fit(
  graphdef,
  frozen,
  state,
  graph,
  labels,
  train_mask,
  val_mask,
  unlearn_mask,
  key,
  learning_rate,
  weight_decay,
  *,
  epochs,
):
  tx = adam_l2(learning_rate, weight_decay)

  def loss_fn(st, k):
    logits = nnx.merge(graphdef, frozen, st)(graph, k)
    loss = masked_cross_entropy(logits, labels, train_mask)
    return loss + unlearning_penalty(logits, labels, unlearn_mask)

  def evaluate(st):
    logits = nnx.merge(graphdef, frozen, st)(graph)
    return masked_accuracy(logits, labels, val_mask)

  def step(carry, k):
    st, opt, best, best_acc, nonfinite = carry
    loss, g = jax.value_and_grad(loss_fn)(st, k)
    upd, opt = tx.update(g, opt, st)
    st = optax.apply_updates(st, upd)
    acc = evaluate(st)
    better = acc > best_acc
    best = jax.tree.map(lambda a, b: jnp.where(better, a, b), st, best)
    nonfinite = nonfinite | ~jnp.isfinite(loss)
    return (st, opt, best, jnp.maximum(acc, best_acc), nonfinite), loss

  init = (state, tx.init(state), state, jnp.float32(-1.0), jnp.bool_(False))
  (st, _, best, best_acc, nonfinite), losses = jax.lax.scan(
    step, init, jax.random.split(key, epochs)
  )
  return st, best, best_acc, losses, nonfinite


def fit_classifier(
  model: nnx.Module,
  graph: jraph.GraphsTuple,
  labels,
  train_mask,
  *,
  epochs: int,
  learning_rate: float,
  weight_decay: float,
  seed: int,
  val_mask=None,
  unlearn_mask=None,
  frozen: nnx.filterlib.Filter = nnx.Nothing,
) -> tuple[nnx.Module, dict]:
  """Trains `model` (in place) with masked cross-entropy.

  Args:
    model: an NNX module mapping `(graph, key)` to logits `[N, C]`.
    graph: the training graph (weights 0 on absent/padding edges).
    labels: int `[N]` (poisoned labels where the caller poisons).
    train_mask: `[N]` loss weights.
    epochs, learning_rate, weight_decay: full-batch Adam (L2 decay) steps;
      the two hyperparameters are traced (no recompilation per value).
    seed: dropout seed.
    val_mask: if given, keep the parameters of the best validation accuracy.
    unlearn_mask: if given, add RIGBD's mean p(label) over these nodes.
    frozen: an NNX filter of state that is not trained (e.g. the
      pre-trained GNN under a prompt: `nnx.PathContains('gnn')`).

  Returns:
    The trained model and `{'losses': [epochs], 'best_val': float}`.

  Raises:
    FloatingPointError: if a loss becomes non-finite (names the epoch).
  """
  if epochs < 1:
    raise ValueError(f'epochs={epochs} must be >= 1')
  n = graph.nodes.shape[0]
  labels = jnp.asarray(labels, jnp.int32)
  if labels.shape != (n,):
    raise ValueError(f'labels shape {labels.shape} != ({n},)')
  zeros = jnp.zeros(n, jnp.float32)
  graphdef, frozen_state, state = nnx.split(model, frozen, ...)
  st, best, best_acc, losses, nonfinite = _fit(
    graphdef,
    frozen_state,
    state,
    jax.tree.map(jnp.asarray, graph),
    labels,
    jnp.asarray(train_mask, jnp.float32),
    zeros if val_mask is None else jnp.asarray(val_mask, jnp.float32),
    zeros if unlearn_mask is None else jnp.asarray(unlearn_mask, jnp.float32),
    jax.random.key(seed),
    hyperparameter(learning_rate),
    hyperparameter(weight_decay),
    epochs=int(epochs),
  )
  if bool(nonfinite):
    bad = int(np.flatnonzero(~np.isfinite(np.asarray(losses)))[0])
    raise FloatingPointError(f'non-finite training loss at epoch {bad}')
  nnx.update(model, st if val_mask is None else best)
  return model, {'losses': np.asarray(losses), 'best_val': float(best_acc)}


@functools.partial(jax.jit, static_argnames=('graphdef',))
def _predict(graphdef, state, graph):
  return nnx.merge(graphdef, state)(graph)


def predict(model: nnx.Module, graph: jraph.GraphsTuple) -> jax.Array:
  """Evaluation-mode logits `[N, C]` (jitted, cached per shape)."""
  graphdef, state = nnx.split(model)
  return _predict(graphdef, state, jax.tree.map(jnp.asarray, graph))
