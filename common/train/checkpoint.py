"""Orbax checkpoints of a `TrainState`: save every N steps, resume latest.

Layout (orbax `CheckpointManager`, one folder per saved step):

  <workdir>/checkpoints/<step>/state/...   the TrainState arrays (OCDBT)
  <workdir>/checkpoints/<step>/_CHECKPOINT_METADATA

A step folder appears only once fully written (orbax writes to a temporary
folder and renames it), so a crash mid-save leaves the previous checkpoint
as the latest.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

CHECKPOINT_DIR = 'checkpoints'
_ITEM = 'state'


def abstract_like(tree: Any) -> Any:
  """`jax.ShapeDtypeStruct`s (with shardings) describing `tree`'s arrays."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
  """Saves and restores a pytree (usually a `TrainState`) by step.

  Example:
    ckpt = Checkpointer(workdir, max_to_keep=2)
    if ckpt.latest_step() is not None:
      state = ckpt.restore(like=state)
    ...
    ckpt.save(step, state)
    ckpt.close()
  """

  def __init__(
    self,
    workdir: str | os.PathLike,
    *,
    max_to_keep: int | None = 2,
    async_save: bool = True,
  ):
    """Opens `<workdir>/checkpoints` (created if missing).

    Args:
      workdir: the run's folder.
      max_to_keep: how many most recent checkpoints to keep (None: all). The
        latest one is never deleted.
      async_save: write to disk in a background thread (`save` returns once
        the arrays are copied off the devices).
    """
    if max_to_keep is not None and max_to_keep < 1:
      raise ValueError(
        f'Checkpointer: max_to_keep={max_to_keep} must be >= 1 or None.'
      )
    self.directory = pathlib.Path(workdir).absolute() / CHECKPOINT_DIR
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        create=True,
        enable_async_checkpointing=async_save,
      ),
    )

  def all_steps(self) -> list[int]:
    """Steps with a complete checkpoint, ascending."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    """The newest complete checkpoint's step, or None if there is none."""
    return self._manager.latest_step()

  def save(self, step: int, tree: Any, *, force: bool = False) -> bool:
    """Saves `tree` as checkpoint `step` (asynchronously by default).

    Returns:
      Whether a checkpoint was written (False if `step` already exists).
    """
    if step in self._manager.all_steps():
      return False
    return self._manager.save(
      int(step),
      args=ocp.args.Composite(**{_ITEM: ocp.args.StandardSave(tree)}),
      force=force,
    )

  def restore(self, *, like: Any, step: int | None = None) -> Any:
    """Restores checkpoint `step` (default: the latest).

    Args:
      like: a pytree with the structure, shapes, dtypes and shardings to
        restore into (the freshly initialised state, or its `abstract_like`).
        NamedTuples (TrainState, optax states) come back as NamedTuples.
      step: which checkpoint; default the latest.

    Returns:
      The restored pytree, its arrays placed with `like`'s shardings.

    Raises:
      FileNotFoundError: there is no such checkpoint (lists the existing).
    """
    self.wait()
    if step is None:
      step = self.latest_step()
    if step is None or step not in self._manager.all_steps():
      raise FileNotFoundError(
        f'Checkpointer.restore: no checkpoint for step {step} in '
        f'{self.directory}; available steps: {self.all_steps()}.'
      )
    restored = self._manager.restore(
      int(step),
      args=ocp.args.Composite(
        **{_ITEM: ocp.args.StandardRestore(abstract_like(like))}
      ),
    )
    return restored[_ITEM]

  def wait(self) -> None:
    """Blocks until background saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Finishes pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
