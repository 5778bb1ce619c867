"""NSPO as optax `GradientTransformation`s.

Two placements of the same projector P (see `nspo/README.md`):

* `project(spaces)`: every step, u <- P u for each targeted Flax kernel
  `(d_in, d_out)` update. Place it *after* the preconditioner (and after
  weight decay), e.g. `optax.chain(optax.adamw(lr), nspo.project(spaces))`:
  then every step's ΔW lies in the null space and x ΔW = 0 exactly for the
  protected inputs x. Projecting the gradient before Adam does not keep ΔW
  there, because Adam rescales coordinates.
* `reproject_every(spaces, every)`: the released NSPO code's behaviour:
  updates pass through unchanged, and every `every` steps the accumulated
  drift is projected, W <- W_ref + P (W - W_ref) (torch's `(W - W_ref) P`
  in Flax layout). Must be last in the chain, since it needs the final
  update.

Both keep the projectors in their state (not in the closure), so they are
not baked into the compiled program as constants and are checkpointed with
the optimizer state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from common import optim
from nspo import spaces as spaces_lib
from nspo import targets as targets_lib


class ProjectionState(NamedTuple):
  """State of `project`: `{site: Projector}` stacked over layers."""

  spaces: dict[str, spaces_lib.Projector]


class ReprojectState(NamedTuple):
  """State of `reproject_every`.

  Attributes:
    count: `[]` int32 number of updates seen.
    reference: W_ref of every targeted leaf, in flatten order.
    spaces: `{site: Projector}`.
  """

  count: jax.Array
  reference: tuple[jax.Array, ...]
  spaces: dict[str, spaces_lib.Projector]


def _default_targets(spaces) -> dict[str, str]:
  allt = {**targets_lib.MLP_TARGETS, **targets_lib.ATTENTION_TARGETS}
  chosen = {p: s for p, s in allt.items() if s in spaces}
  if not chosen:
    raise ValueError(
      f'no default target reads the sites {sorted(spaces)}; pass targets= '
      '{pattern: site} explicitly.'
    )
  return chosen


def _check_spaces(spaces):
  if not isinstance(spaces, Mapping) or not spaces:
    raise ValueError('spaces must be a non-empty {site: Projector} mapping.')
  for site, p in spaces.items():
    if not spaces_lib.is_projector(p):
      raise TypeError(
        f'spaces[{site!r}] is a {type(p).__name__}, not a projector from '
        'nspo.estimate.'
      )


def _resolve(tree, targets, spaces) -> dict[str, optim.LeafTarget]:
  found = optim.resolve_targets(tree, targets)
  for path, t in found.items():
    if t.value not in spaces:
      raise ValueError(
        f'parameter {path!r} targets site {t.value!r}, which has no null '
        f'space; estimated sites: {sorted(spaces)}.'
      )
  return found


def _as_matrix(
  path: str, shape: tuple[int, ...], t: optim.LeafTarget, p
) -> tuple[int, int, int]:
  """(L, d, n) view of a targeted leaf; raises naming the leaf if impossible."""
  d, num_layers = spaces_lib.dim(p), spaces_lib.num_layers(p)
  if t.layer is not None:
    if t.layer >= num_layers:
      raise ValueError(
        f'parameter {path!r} is layer {t.layer}, but site {t.value!r} has '
        f'null spaces for {num_layers} layers.'
      )
    lead, rest = 1, shape
  else:
    if not shape or shape[0] != num_layers:
      raise ValueError(
        f'parameter {path!r} has no layer index in its path, so it must be '
        f'stacked [{num_layers}, d_in, ...]; got shape {shape}.'
      )
    lead, rest = num_layers, shape[1:]
  for k in range(1, len(rest)):
    if math.prod(rest[:k]) == d:
      return lead, d, math.prod(rest[k:])
  raise ValueError(
    f'parameter {path!r} of shape {shape}: no leading axes multiply to the '
    f'input dimension {d} of site {t.value!r} (is it the right layer kind?).'
  )


def _project_leaf(path, u, t, spaces):
  p = spaces[t.value]
  lead, d, n = _as_matrix(path, u.shape, t, p)
  if t.layer is not None:
    p = spaces_lib.layer(p, t.layer)
  return spaces_lib.apply(p, u.reshape(lead, d, n)).reshape(u.shape)


def _map_targeted(fn, tree, found):
  def leaf(path, x):
    name = optim.path_str(path)
    return fn(name, x, found[name]) if name in found else x

  return jax.tree_util.tree_map_with_path(leaf, tree)


def project(
  spaces: Mapping[str, spaces_lib.Projector],
  targets: Mapping[str, str] | None = None,
) -> optax.GradientTransformation:
  """Projects each targeted kernel's update onto its null space: u <- P u.

  Example:
    tx = optax.chain(optax.adamw(1e-3), nspo.project(spaces))

  Args:
    spaces: `{site: Projector}` from `nspo.estimate`.
    targets: `{regex on parameter path: site}`; default: the MLP and
      attention targets of `nspo.targets` whose site is in `spaces`. Every
      pattern must match a parameter.

  Returns:
    A stateless-in-effect transformation whose state holds the projectors.
    Untargeted leaves pass through unchanged.
  """
  _check_spaces(spaces)
  tgts = dict(targets) if targets is not None else _default_targets(spaces)

  def init_fn(params):
    found = _resolve(params, tgts, spaces)
    for name, x in _targeted_leaves(params, found):
      _as_matrix(name, x.shape, found[name], spaces[found[name].value])
    return ProjectionState(dict(spaces))

  def update_fn(updates, state, params=None):
    del params
    found = _resolve(updates, tgts, state.spaces)
    new = _map_targeted(
      lambda n, u, t: _project_leaf(n, u, t, state.spaces), updates, found
    )
    return new, state

  return optax.GradientTransformation(init_fn, update_fn)


def _targeted_leaves(tree, found) -> list[tuple[str, Any]]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  named = [(optim.path_str(p), x) for p, x in leaves]
  return [(n, x) for n, x in named if n in found]


def reproject_every(
  spaces: Mapping[str, spaces_lib.Projector],
  every: int = 5,
  targets: Mapping[str, str] | None = None,
) -> optax.GradientTransformation:
  """Every `every` steps, projects the accumulated drift onto the null space.

  On steps k·every the targeted updates become
  u' = W_ref + P (W + u - W_ref) - W, so that after `optax.apply_updates`
  W_new = W_ref + P (W + u - W_ref); on other steps u passes through.
  W_ref is the parameter value given to `init`.

  Args:
    spaces: `{site: Projector}`.
    every: projection period in steps (the released code uses 5).
    targets: as in `project`.

  Returns:
    A transformation that needs `params` in `update`; put it last.
  """
  _check_spaces(spaces)
  if not isinstance(every, int) or every < 1:
    raise ValueError(f'every must be a positive int, got {every!r}.')
  tgts = dict(targets) if targets is not None else _default_targets(spaces)

  def init_fn(params):
    found = _resolve(params, tgts, spaces)
    ref = []
    for name, x in _targeted_leaves(params, found):
      _as_matrix(name, x.shape, found[name], spaces[found[name].value])
      ref.append(jnp.array(x, copy=True))
    return ReprojectState(jnp.zeros((), jnp.int32), tuple(ref), dict(spaces))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('reproject_every needs params in update().')
    found = _resolve(updates, tgts, state.spaces)
    u_leaves = _targeted_leaves(updates, found)
    w_leaves = _targeted_leaves(params, found)
    if [n for n, _ in u_leaves] != [n for n, _ in w_leaves] or len(
      u_leaves
    ) != len(state.reference):
      raise ValueError(
        'updates, params and the reference of reproject_every have '
        'different targeted leaves: '
        f'{[n for n, _ in u_leaves]} vs {[n for n, _ in w_leaves]} '
        f'({len(state.reference)} references).'
      )
    count = state.count + 1

    def projected(us):
      out = []
      for (name, u), (_, w), w0 in zip(
        u_leaves, w_leaves, state.reference, strict=True
      ):
        if w.shape != w0.shape:
          raise ValueError(
            f'parameter {name!r} has shape {w.shape}, its reference {w0.shape}.'
          )
        del u  # The traced operand `us` carries the updates.
        drift = (
          w.astype(jnp.float32)
          + us[len(out)].astype(jnp.float32)
          - w0.astype(jnp.float32)
        )
        pd = _project_leaf(name, drift, found[name], state.spaces)
        new_w = w0.astype(jnp.float32) + pd
        out.append((new_w - w.astype(jnp.float32)).astype(us[len(out)].dtype))
      return tuple(out)

    us = tuple(u for _, u in u_leaves)
    new_us = jax.lax.cond(count % every == 0, projected, lambda x: x, us)
    by_name = dict(zip([n for n, _ in u_leaves], new_us, strict=True))
    new = _map_targeted(lambda n, u, t: by_name[n], updates, found)
    return new, ReprojectState(count, state.reference, state.spaces)

  return optax.GradientTransformation(init_fn, update_fn)
