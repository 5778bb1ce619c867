"""Implicit routing: a small classifier on mean-pooled prompt embeddings.

    feats = pooled_embeddings(embedding [V, D], tokens [B, T], mask [B, T])
    params = init_router(key, D, hidden, num_packs)
    logits = router_logits(params, feats)          # [B, K]
    loss = router_loss(params, {'feats', 'labels'}) # mean cross-entropy

The router is trained on the tasks' prompts (label = the task's pack) with
`common.train.fit` (see `graftllm.experiment`); at inference `route`
gives per-prompt softmax weights, `top1` the hard choice.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def pooled_embeddings(embedding, tokens, mask) -> jax.Array:
  """`[B, D]` mean of the token embeddings over `mask`'s real tokens."""
  e = jnp.asarray(embedding)[tokens]  # [B, T, D]
  m = jnp.asarray(mask, e.dtype)[..., None]
  return jnp.sum(e * m, 1) / jnp.maximum(jnp.sum(m, 1), 1.0)


def init_router(key, d_in: int, hidden: int, num_packs: int) -> dict:
  """Two-layer MLP parameters (`hidden` ReLU units)."""
  if num_packs < 1 or hidden < 1 or d_in < 1:
    raise ValueError(
      f'init_router: d_in={d_in}, hidden={hidden}, num_packs={num_packs} '
      'must all be >= 1.'
    )
  k1, k2 = jax.random.split(key)
  return {
    'w1': jax.random.normal(k1, (d_in, hidden)) / jnp.sqrt(d_in),
    'b1': jnp.zeros((hidden,)),
    'w2': jax.random.normal(k2, (hidden, num_packs)) / jnp.sqrt(hidden),
    'b2': jnp.zeros((num_packs,)),
  }


def router_logits(params, feats) -> jax.Array:
  """`[B, K]` logits for `feats [B, D]`."""
  h = jax.nn.relu(feats @ params['w1'] + params['b1'])
  return h @ params['w2'] + params['b2']


def router_loss(params, batch, rng=None):
  """Mean cross-entropy of `batch['labels'] [B]` (`fit`-style signature)."""
  del rng
  logits = router_logits(params, batch['feats'])
  loss = optax.softmax_cross_entropy_with_integer_labels(
    logits, batch['labels']
  ).mean()
  acc = jnp.mean(jnp.argmax(logits, -1) == batch['labels'])
  return loss, {'accuracy': acc}


def route(params, feats) -> jax.Array:
  """`[B, K]` softmax routing weights."""
  return jax.nn.softmax(router_logits(params, feats), -1)


def top1(params, feats) -> jax.Array:
  """`[B]` index of the chosen pack."""
  return jnp.argmax(router_logits(params, feats), -1)
