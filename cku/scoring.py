"""Neuron importance scores on retain ("useful") data.

A *neuron* is index j of the MLP intermediate dimension of layer l; its
activation a_j is the input of the down projection (for SwiGLU,
`silu(gate(x)) * up(x)`). Scores are streamed over batches:

* `attribution` (default): S_j = E_tokens |a_j · ∂L_retain/∂a_j|, a
  first-order estimate of the loss change from ablating the neuron.
* `activation`: S_j = E_tokens |a_j| (Wanda-like).
* `gradient`: S_j = E_tokens |∂L_retain/∂a_j|.
* `weight_saliency` (from parameter gradients, see `weight_saliency`):
  S_j = Σ over the neuron's weights |W ⊙ ∇_W L| (SNIP/SalUn-like).

This is a *reconstruction*: the CKU paper's exact formula is not public
(see cku/README.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cku import neurons

SCORES = ('attribution', 'activation', 'gradient')


class ScoreStats(NamedTuple):
  """Running score sums.

  Attributes:
    sums: `[L, F]` float32 sums of per-token scores.
    count: `[]` float32 number of counted tokens.
  """

  sums: jax.Array
  count: jax.Array


def init_scores(num_layers: int, d_ff: int) -> ScoreStats:
  """Zero score statistics for `num_layers` MLPs of width `d_ff`."""
  if num_layers < 1 or d_ff < 1:
    raise ValueError(
      f'need num_layers >= 1 and d_ff >= 1, got {num_layers}, {d_ff}.'
    )
  return ScoreStats(
    jnp.zeros((num_layers, d_ff), jnp.float32), jnp.zeros((), jnp.float32)
  )


def token_scores(
  activations: jax.Array | None,
  grads: jax.Array | None,
  method: str = 'attribution',
) -> jax.Array:
  """Per-token neuron scores.

  Args:
    activations: `[L, B, T, F]` intermediate activations a (None allowed for
      `gradient`).
    grads: `[L, B, T, F]` ∂L/∂a (None allowed for `activation`).
    method: one of `SCORES`.

  Returns:
    `[L, B, T, F]` float32 non-negative scores.
  """
  if method not in SCORES:
    raise ValueError(f'unknown score method {method!r}; allowed: {SCORES}.')
  need_a = method in ('attribution', 'activation')
  need_g = method in ('attribution', 'gradient')
  if need_a and activations is None:
    raise ValueError(f'score method {method!r} needs activations.')
  if need_g and grads is None:
    raise ValueError(f'score method {method!r} needs gradients.')
  if need_a and need_g and activations.shape != grads.shape:
    raise ValueError(
      f'activations {activations.shape} and gradients {grads.shape} differ '
      'in shape.'
    )
  a = None if activations is None else activations.astype(jnp.float32)
  g = None if grads is None else grads.astype(jnp.float32)
  if method == 'attribution':
    return jnp.abs(a * g)
  if method == 'activation':
    return jnp.abs(a)
  return jnp.abs(g)


def accumulate_scores(
  stats: ScoreStats,
  activations: jax.Array | None,
  grads: jax.Array | None,
  mask: jax.Array | None = None,
  method: str = 'attribution',
) -> ScoreStats:
  """Adds one batch. Jit-able (with `method` static).

  Args:
    stats: running sums.
    activations: `[L, B, T, F]` or None (see `token_scores`).
    grads: `[L, B, T, F]` or None.
    mask: optional `[B, T]`, 1 on tokens to count.
    method: one of `SCORES`.

  Returns:
    Updated statistics.
  """
  s = token_scores(activations, grads, method)
  if (
    s.ndim != 4
    or s.shape[0] != stats.sums.shape[0]
    or (s.shape[-1] != stats.sums.shape[1])
  ):
    raise ValueError(
      f'expected [{stats.sums.shape[0]}, B, T, {stats.sums.shape[1]}] '
      f'activations/gradients, got {s.shape}.'
    )
  if mask is None:
    m = jnp.ones(s.shape[1:3], jnp.float32)
  else:
    if mask.shape != s.shape[1:3]:
      raise ValueError(
        f'mask shape {mask.shape} does not match batch shape {s.shape[1:3]}.'
      )
    m = mask.astype(jnp.float32)
  sums = stats.sums + jnp.einsum('lbtf,bt->lf', s, m)
  return ScoreStats(sums, stats.count + jnp.sum(m))


def mean_scores(stats: ScoreStats) -> np.ndarray:
  """`[L, F]` mean per-token scores; raises if no tokens or non-finite."""
  n = float(stats.count)
  if n <= 0:
    raise ValueError('no tokens were scored.')
  s = np.asarray(stats.sums, np.float64) / n
  finite = np.isfinite(s).all(axis=1)
  if not finite.all():
    raise ValueError(
      f'layer {int(np.argmin(finite))}: neuron scores are not finite.'
    )
  return s


def weight_saliency(
  params: Any,
  grads: Any,
  num_layers: int,
  targets: Mapping[str, int] | None = None,
) -> jax.Array:
  """SNIP/SalUn-like score: Σ over each neuron's weights of |W ⊙ ∇_W L|.

  Args:
    params: parameter pytree.
    grads: gradient pytree of the same structure.
    num_layers: number of MLP layers L.
    targets: `{regex with (?P<layer>...): neuron axis}` (default
      `cku.NEURON_TARGETS`).

  Returns:
    `[L, F]` float32 scores (layers with no matched leaf are zero).
  """
  if jax.tree.structure(params) != jax.tree.structure(grads):
    raise ValueError('params and grads have different tree structures.')
  found = neurons.resolve(params, targets)
  flat_p = neurons.named_leaves(params)
  flat_g = neurons.named_leaves(grads)
  per_layer: dict[int, jax.Array] = {}
  for name, t in found.items():
    w, g = flat_p[name], flat_g[name]
    axis = t.value % w.ndim
    other = tuple(i for i in range(w.ndim) if i != axis)
    s = jnp.sum(jnp.abs(w.astype(jnp.float32) * g.astype(jnp.float32)), other)
    per_layer[t.layer] = per_layer.get(t.layer, 0.0) + s
  widths = {v.shape[0] for v in per_layer.values()}
  if len(widths) != 1:
    raise ValueError(f'MLP widths differ across matched leaves: {widths}.')
  if max(per_layer) >= num_layers:
    raise ValueError(
      f'a matched leaf is layer {max(per_layer)}, but num_layers is '
      f'{num_layers}.'
    )
  d_ff = widths.pop()
  return jnp.stack(
    [per_layer.get(i, jnp.zeros((d_ff,))) for i in range(num_layers)]
  )
