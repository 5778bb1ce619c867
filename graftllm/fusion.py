"""Applying SkillPacks: theta = theta_base + sum_i R(x)_i * delta_hat_i.

* `SkillLibrary`: the base parameters plus named packs (decoded once);
  `add` / `remove` are continual learning: a pack never changes another,
  so routing to pack A gives the same parameters, bit for bit, whatever
  else the library holds.
* `params_for(weights)`: merged parameters for routing weights `{name: w}`
  (explicit routing: `{task_id: 1.0}`); zero-weight packs are skipped.
* `ExplicitRouter`: task id -> pack name.
* On the fly, without materialising a delta: `lowrank_apply(x, kernel,
  factors)` = `x @ kernel + ((x @ V) * S) @ U^T` (`factors_for` gives the
  routed, decoded factors of a kernel).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from graftllm import delta as delta_lib
from graftllm import skillpack


class SkillLibrary:
  """Base parameters and a set of named SkillPacks.

  Args:
    base_params: the base model's parameter tree.
  """

  def __init__(self, base_params: Any):
    self.base_params = base_params
    self._packs: dict[str, skillpack.SkillPack] = {}
    self._dense: dict[str, dict[str, np.ndarray]] = {}

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(self._packs)

  def add(self, pack: skillpack.SkillPack, name: str | None = None) -> str:
    """Adds a pack (decoded once); returns its name.

    Raises:
      ValueError: the name is taken.
      delta.ArchitectureMismatch: the pack does not fit the base model.
    """
    name = name or pack.name
    if name in self._packs:
      raise ValueError(f'a pack named {name!r} is already in the library.')
    dense = pack.decode()
    delta_lib.add_delta(self.base_params, dense, 0.0)  # shape check only
    self._packs[name] = pack
    self._dense[name] = dense
    return name

  def remove(self, name: str) -> skillpack.SkillPack:
    """Removes a pack (its skill goes with it) and returns it."""
    self._check(name)
    del self._dense[name]
    return self._packs.pop(name)

  def pack(self, name: str) -> skillpack.SkillPack:
    self._check(name)
    return self._packs[name]

  def _check(self, name):
    if name not in self._packs:
      raise KeyError(
        f'no pack named {name!r} in the library; it holds {self.names}.'
      )

  def params_for(self, weights: Mapping[str, float]) -> Any:
    """`theta_base + sum_i w_i delta_hat_i` for `weights {name: w}`.

    Packs with weight 0 are not touched; `{}` gives the base parameters.
    """
    params = self.base_params
    for name in sorted(weights):
      w = float(weights[name])
      self._check(name)
      if w != 0.0:
        params = delta_lib.add_delta(params, self._dense[name], w)
    return params

  def factors_for(self, name: str, path: str):
    """Decoded `(V, S, U)` of one kernel of one pack (for `lowrank_apply`)."""
    self._check(name)
    entry = self._packs[name].modules[path]
    return skillpack.lowrank_factors(entry)


class ExplicitRouter:
  """Routes by task id: `{task_id: pack name}`."""

  def __init__(self, table: Mapping[str, str]):
    self.table = dict(table)

  def weights(self, task_id: str) -> dict[str, float]:
    if task_id not in self.table:
      raise KeyError(
        f'no pack is routed for task {task_id!r}; known: {sorted(self.table)}.'
      )
    return {self.table[task_id]: 1.0}


@jax.jit
def lowrank_apply(x, kernel, v, s, u):
  """`x @ (kernel + V diag(S) U^T)` without forming the delta.

  Args:
    x: `[..., d_in]`.
    kernel: `[d_in, d_out]` base weight.
    v: `[d_in, r]`, s: `[r]`, u: `[d_out, r]` (`skillpack.lowrank_factors`).

  Returns:
    `[..., d_out]`.
  """
  return x @ kernel + ((x @ v) * s) @ u.T


@jax.jit
def merged_apply(x, kernel):
  """`x @ kernel` (the merged-weights path, for comparison)."""
  return x @ kernel


def merge_factors(kernel, v, s, u) -> jax.Array:
  """`kernel + V diag(S) U^T` (merging a low-rank delta once)."""
  return (
    jnp.asarray(kernel) + (jnp.asarray(v) * jnp.asarray(s)) @ jnp.asarray(u).T
  )
