"""Mapping MLP neurons to parameter slices, and choosing which to lock.

Neuron j of layer l owns column j of the gate/up kernels `(d_model, d_ff)`
(and entry j of their biases) and row j of the down kernel
`(d_ff, d_model)`. `NEURON_TARGETS` maps a path regex (with a `layer`
group) to the *neuron axis* of the matched leaf; patterns are resolved by
`common.optim.resolve_targets` (`re.search` over `common.optim.path_str`
paths).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from common import optim

NEURON_TARGETS: dict[str, int] = {
  r'layers/(?P<layer>\d+)/mlp/(gate_proj|up_proj)/kernel$': -1,
  r'layers/(?P<layer>\d+)/mlp/(gate_proj|up_proj)/bias$': -1,
  r'layers/(?P<layer>\d+)/mlp/down_proj/kernel$': 0,
}


def resolve(
  tree: Any, targets: Mapping[str, int] | None = None
) -> dict[str, optim.LeafTarget]:
  """`{leaf path: LeafTarget(neuron axis, layer)}` for matched leaves.

  Raises:
    ValueError: a pattern matches nothing, or has no `layer` group.
  """
  tgts = dict(NEURON_TARGETS if targets is None else targets)
  for pattern, axis in tgts.items():
    if '(?P<layer>' not in pattern:
      raise ValueError(
        f'neuron target {pattern!r} needs a (?P<layer>\\d+) group.'
      )
    if not isinstance(axis, int):
      raise ValueError(
        f'neuron target {pattern!r}: the neuron axis must be an int, got '
        f'{axis!r}.'
      )
  if targets is None:
    # Biases are optional in the default; keep only patterns that match.
    tgts = {
      p: a
      for p, a in tgts.items()
      if any(
        jax.tree.leaves(
          optim.path_mask(tree, p, match='search', allow_unmatched=True)
        )
      )
    }
    if not tgts:
      raise ValueError(
        'no default neuron target matches the tree; pass targets= '
        '{pattern with (?P<layer>\\d+): neuron axis}.'
      )
  return optim.resolve_targets(tree, tgts)


def named_leaves(tree: Any) -> dict[str, Any]:
  """`{path: leaf}` of a pytree."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {optim.path_str(p): x for p, x in leaves}


def select(
  scores: np.ndarray | jax.Array,
  lock_rate: float,
  layers: list[int] | tuple[int, ...] | None = None,
) -> dict[int, np.ndarray]:
  """Locks the top `ceil(lock_rate * F)` neurons by score in each layer.

  Args:
    scores: `[L, F]` importance scores (higher = more important to keep).
    lock_rate: fraction locked, in [0, 1) (CKU's NLR, 0.8 in the paper).
    layers: the layers to unlearn in (default: all); others get no entry.

  Returns:
    `{layer: [F] bool}`, True for locked neurons. Ties are broken towards
    the lower index.
  """
  s = np.asarray(scores, np.float64)
  if s.ndim != 2:
    raise ValueError(f'scores must be [L, F], got shape {s.shape}.')
  if not 0.0 <= lock_rate < 1.0:
    raise ValueError(
      f'lock_rate must be in [0, 1) (1 would lock every neuron and nothing '
      f'could be unlearned), got {lock_rate!r}.'
    )
  num_layers, d_ff = s.shape
  chosen = list(range(num_layers)) if layers is None else list(layers)
  for i in chosen:
    if not 0 <= i < num_layers:
      raise ValueError(f'layer {i} is out of range for {num_layers} layers.')
  if len(set(chosen)) != len(chosen):
    raise ValueError(f'layers has duplicates: {chosen}.')
  k = math.ceil(lock_rate * d_ff - 1e-9)
  out = {}
  for i in chosen:
    if not np.isfinite(s[i]).all():
      raise ValueError(f'layer {i}: scores are not finite.')
    order = np.argsort(-s[i], kind='stable')
    locked = np.zeros(d_ff, bool)
    locked[order[:k]] = True
    out[i] = locked
  return out


def depth_scaled_layers(
  num_layers: int, first: int = 8, last: int = 12, of: int = 32
) -> list[int]:
  """CKU's layers 8-12 of a 32-layer model, scaled to `num_layers`."""
  if num_layers < 1:
    raise ValueError(f'num_layers must be >= 1, got {num_layers}.')
  lo = math.floor(first * num_layers / of)
  hi = max(lo, math.floor(last * num_layers / of))
  return list(range(lo, min(hi, num_layers - 1) + 1))
