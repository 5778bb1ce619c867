"""Parameter layouts of the decoder: one subtree per layer, or stacked.

An unrolled model (`LMConfig.scan_layers=False`) keeps each block's
parameters under `layers/{i}/...`; a scanned one (`scan_layers=True`) keeps
one subtree `layers/...` whose leaves have a leading `[L]` axis, run by one
`jax.lax.scan`. Both compute the same function. These convert parameters
(pure dicts, as `nnx.State.to_pure_dict()` gives) and whole models between
the two, e.g. to load a checkpoint written unrolled into a scanned model:

    scanned = with_layout(unrolled_model, scan_layers=True)
    pure = stack_layers(nnx.state(unrolled_model).to_pure_dict())
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from common.models import transformer


def stack_layers(pure: Mapping[str, Any]) -> dict[str, Any]:
  """`{'layers': {0: t0, 1: t1, ...}, ...}` -> `{'layers': stack(t_i), ...}`.

  Args:
    pure: parameters in the unrolled layout (a pure nested dict).

  Returns:
    A new dict in the scanned layout (every other entry shared).

  Raises:
    ValueError: `layers` is not a dict keyed `0..L-1`.
  """
  layers = pure.get('layers')
  keys = sorted(layers) if isinstance(layers, Mapping) else layers
  if not isinstance(layers, Mapping) or keys != list(range(len(layers))):
    raise ValueError(
      'stack_layers: expected params["layers"] keyed 0..L-1 (the unrolled '
      f'layout), got {keys!r:.80}.'
    )
  subtrees = [layers[i] for i in range(len(layers))]
  out = dict(pure)
  out['layers'] = jax.tree.map(lambda *xs: jnp.stack(xs), *subtrees)
  return out


def unstack_layers(pure: Mapping[str, Any]) -> dict[str, Any]:
  """Inverse of `stack_layers`: leaves `[L, ...]` -> `layers/{i}/...`."""
  layers = pure.get('layers')
  leaves = jax.tree.leaves(layers)
  if not isinstance(layers, Mapping) or not leaves or 0 in layers:
    raise ValueError(
      'unstack_layers: expected params["layers"] in the scanned layout '
      '(one subtree with a leading [L] axis).'
    )
  n = leaves[0].shape[0]
  out = dict(pure)
  out['layers'] = {
    i: jax.tree.map(lambda x, i=i: x[i], layers) for i in range(n)
  }
  return out


def with_layout(
  model: transformer.Transformer, scan_layers: bool
) -> transformer.Transformer:
  """The same model (same parameter values) in the requested layout.

  Returns `model` itself if it already has that layout.
  """
  config = model.config
  if config.scan_layers == scan_layers:
    return model
  new_config = config.replace(scan_layers=scan_layers)
  pure = nnx.state(model, nnx.Param).to_pure_dict()
  pure = stack_layers(pure) if scan_layers else unstack_layers(pure)
  abstract = nnx.eval_shape(
    lambda: transformer.Transformer(new_config, rngs=nnx.Rngs(0))
  )
  graphdef, state = nnx.split(abstract)
  state.replace_by_pure_dict(pure)
  return nnx.merge(graphdef, state)
