"""Freezing parameters by path: exact-zero updates for the frozen leaves.

`optax.masked(tx, mask)` alone does NOT freeze: leaves outside the mask get
their raw gradients as updates, which `optax.apply_updates` then adds to the
parameters (gradient ascent).
Freezing therefore always zeroes the frozen updates with
`optax.set_to_zero()`:

* `freeze(mask)` is `optax.masked(optax.set_to_zero(), mask)`; chain it
  AFTER the optimizer (`optax.chain(tx, freeze(mask))`) so decoupled weight
  decay or momentum cannot move frozen leaves. The optimizer still keeps
  state (e.g. Adam moments) for them.
* `with_frozen(tx, params, patterns)` partitions the parameters with
  `optax.multi_transform`: trainable leaves go through `tx`, frozen ones
  through `set_to_zero()`. `tx` keeps no state for frozen leaves and its
  global-norm clipping sees only trainable gradients.
"""

from collections.abc import Iterable
from typing import Any

import optax

from common.optim import paths

TRAINABLE = 'trainable'
FROZEN = 'frozen'


def freeze(mask: Any) -> optax.GradientTransformation:
  """Zeroes the updates of leaves where `mask` is True.

  Args:
    mask: bool pytree (or a callable `params -> mask`), e.g. from
      `paths.path_mask(params, ['embed/.*'])`.

  Returns:
    A `GradientTransformation`; chain it after the optimizer.
  """
  return optax.masked(optax.set_to_zero(), mask)


def frozen_labels(
  params: Any, patterns: str | Iterable[str], match: str = 'fullmatch'
) -> Any:
  """`'frozen'`/`'trainable'` label pytree for `optax.multi_transform`."""
  return paths.path_labels(params, patterns, FROZEN, TRAINABLE, match=match)


def with_frozen(
  tx: optax.GradientTransformation,
  params: Any,
  patterns: str | Iterable[str],
  match: str = 'fullmatch',
) -> optax.GradientTransformation:
  """Wraps `tx` so that parameters whose path matches `patterns` never move.

  Args:
    tx: the optimizer for the trainable parameters.
    params: the parameter pytree (e.g. `nnx.State`); its paths are matched
      now, so a pattern that selects nothing raises immediately.
    patterns: regexes over paths (see `paths.path_mask`).
    match: `'fullmatch'` or `'search'`.

  Returns:
    `optax.multi_transform({'trainable': tx, 'frozen': set_to_zero()},
    labels)`.
  """
  labels = frozen_labels(params, patterns, match=match)
  return optax.multi_transform(
    {TRAINABLE: tx, FROZEN: optax.set_to_zero()}, labels
  )
