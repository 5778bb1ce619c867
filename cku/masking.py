"""CKU's neuron lock as an optax `GradientTransformation`.

`optax.masked`/`optax.freeze` work per leaf; locking *some columns* of a
kernel needs an array-valued mask. `mask(neuron_masks)` zeroes the update
slices of locked neurons (columns of gate/up kernels and biases, rows of the
down kernel) and passes everything else through. Put it **last** in the
chain, after any weight decay, so locked weights stay bit-identical:

  tx = optax.chain(optax.adamw(lr), cku.mask(locked))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cku import neurons
from common import optim


class NeuronMaskState(NamedTuple):
  """`locked`: `{str(layer): [F] float32}`, 1 for locked neurons."""

  locked: dict[str, jax.Array]


def _broadcast(m: jax.Array, shape: tuple[int, ...], axis: int) -> jax.Array:
  axis = axis % len(shape)
  view = [1] * len(shape)
  view[axis] = shape[axis]
  return m.reshape(view)


def mask(
  neuron_masks: Mapping[int, np.ndarray | jax.Array],
  targets: Mapping[str, int] | None = None,
  train_only_selected: bool = False,
) -> optax.GradientTransformation:
  """Zeroes the updates of locked neurons.

  Args:
    neuron_masks: `{layer: [F] bool}`, True for locked neurons (from
      `cku.select`).
    targets: `{regex with (?P<layer>\\d+): neuron axis}`; default
      `cku.NEURON_TARGETS` (gate/up columns, down rows).
    train_only_selected: if True, every leaf that is not a neuron slice of
      a layer in `neuron_masks` gets a zero update too, so only the unlocked
      neurons of the selected layers train.

  Returns:
    A transformation with `NeuronMaskState`.
  """
  if not neuron_masks:
    raise ValueError('neuron_masks is empty: give {layer: [F] bool}.')
  locked = {}
  widths = set()
  for layer, m in neuron_masks.items():
    arr = np.asarray(m)
    if arr.ndim != 1 or arr.dtype != bool:
      raise ValueError(
        f'neuron_masks[{layer!r}] must be a 1-D bool array, got '
        f'{arr.dtype} {arr.shape}.'
      )
    locked[str(int(layer))] = jnp.asarray(arr, jnp.float32)
    widths.add(arr.shape[0])
  if len(widths) != 1:
    raise ValueError(f'neuron masks have different widths: {sorted(widths)}.')

  def _plan(tree, masks):
    found = neurons.resolve(tree, targets)
    for name, t in found.items():
      if str(t.layer) not in masks:
        continue
      shape = neurons.named_leaves(tree)[name].shape
      width = masks[str(t.layer)].shape[0]
      if shape[t.value % len(shape)] != width:
        raise ValueError(
          f'parameter {name!r} has shape {shape}; its neuron axis '
          f'{t.value} has size {shape[t.value % len(shape)]}, but the mask '
          f'of layer {t.layer} has {width} neurons.'
        )
    missing = set(masks) - {str(t.layer) for t in found.values()}
    if missing:
      raise ValueError(
        f'neuron masks given for layers {sorted(int(m) for m in missing)}, '
        'but no '
        'parameter of those layers matches the neuron targets.'
      )
    return found

  def init_fn(params):
    _plan(params, locked)
    return NeuronMaskState(dict(locked))

  def update_fn(updates, state, params=None):
    del params
    found = _plan(updates, state.locked)

    def leaf(path, u):
      name = optim.path_str(path)
      t = found.get(name)
      if t is None or str(t.layer) not in state.locked:
        return jnp.zeros_like(u) if train_only_selected else u
      lock = _broadcast(state.locked[str(t.layer)], u.shape, t.value)
      return jnp.where(lock > 0, jnp.zeros((), u.dtype), u)

    return jax.tree_util.tree_map_with_path(leaf, updates), state

  return optax.GradientTransformation(init_fn, update_fn)
