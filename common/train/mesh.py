"""Device meshes and shardings for data-parallel and FSDP training.

A training mesh has two axes:

* `'data'`: the batch is split over it; parameters are replicated on it.
* `'fsdp'`: the batch is split over it too, and (optionally) each large
  parameter and its optimizer state are split along one of their axes, so
  that a model larger than one device's memory fits (ZeRO-3 style; XLA
  inserts the all-gathers and reduce-scatters).

With `fsdp=1` this is plain data parallelism. Both axes are `AxisType.Auto`
(`jax.make_mesh` defaults to `Explicit`, which Flax NNX layers do not
support), so `jax.jit` propagates shardings from the inputs.

Multi-host: call `maybe_initialize_distributed()` first thing in `main`, then
build the mesh over `jax.devices()` (all hosts' devices) as usual.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = 'data'
FSDP_AXIS = 'fsdp'
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)

# Environment variables that mark a multi-process launch, by launcher.
_DISTRIBUTED_ENV = (
  'JAX_COORDINATOR_ADDRESS',  # explicit launch (+ JAX_NUM_PROCESSES, ...)
  'SLURM_NTASKS',  # SLURM srun
  'OMPI_COMM_WORLD_SIZE',  # Open MPI mpirun
  'TPU_WORKER_HOSTNAMES',  # Cloud TPU pod slices
  'MEGASCALE_COORDINATOR_ADDRESS',
)


def maybe_initialize_distributed() -> bool:
  """Starts JAX's multi-process runtime when launched as one of many.

  Calls `jax.distributed.initialize()` (which auto-detects the coordinator,
  process count and process id on SLURM, Open MPI, Cloud TPU and GKE) when
  one of the usual launcher variables is set and the job has more than one
  process. For a manual launch set `JAX_COORDINATOR_ADDRESS=host:port`,
  `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` on every process. Must run before
  any JAX computation. Single-process runs do nothing.

  Returns:
    True if the distributed runtime was initialised by this call.
  """
  present = [k for k in _DISTRIBUTED_ENV if os.environ.get(k)]
  if not present:
    return False
  for count_var in (
    'JAX_NUM_PROCESSES',
    'SLURM_NTASKS',
    'OMPI_COMM_WORLD_SIZE',
  ):
    if count_var in os.environ and int(os.environ[count_var]) <= 1:
      return False
  kwargs = {}
  if os.environ.get('JAX_COORDINATOR_ADDRESS'):
    kwargs['coordinator_address'] = os.environ['JAX_COORDINATOR_ADDRESS']
    if os.environ.get('JAX_NUM_PROCESSES'):
      kwargs['num_processes'] = int(os.environ['JAX_NUM_PROCESSES'])
    if os.environ.get('JAX_PROCESS_ID'):
      kwargs['process_id'] = int(os.environ['JAX_PROCESS_ID'])
  jax.distributed.initialize(**kwargs)
  logging.info(
    'jax.distributed initialised (from %s): process %d of %d, %d devices',
    ', '.join(present),
    jax.process_index(),
    jax.process_count(),
    jax.device_count(),
  )
  return True


def make_mesh(
  data: int = -1,
  fsdp: int = 1,
  devices: Sequence[jax.Device] | None = None,
) -> Mesh:
  """Builds a `('data', 'fsdp')` mesh with `Auto` axis types.

  Args:
    data: size of the data axis; -1 means "all devices left over", i.e.
      `len(devices) // fsdp`.
    fsdp: size of the fsdp axis (1 = plain data parallelism).
    devices: the devices to use (default: `jax.devices()`, every device of
      every process). `data * fsdp` must equal their number.

  Returns:
    A `jax.sharding.Mesh` of shape `[data, fsdp]`.

  Raises:
    ValueError: a size is not positive or the sizes do not match the devices.
  """
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  if n == 0:
    raise ValueError('make_mesh: devices is empty.')
  if not isinstance(fsdp, int) or fsdp < 1:
    raise ValueError(f'make_mesh: fsdp={fsdp!r} must be an int >= 1.')
  if not isinstance(data, int) or (data < 1 and data != -1):
    raise ValueError(f'make_mesh: data={data!r} must be -1 or an int >= 1.')
  if data == -1:
    if n % fsdp:
      raise ValueError(
        f'make_mesh: fsdp={fsdp} does not divide the {n} devices; pick an '
        f'fsdp size that divides {n}.'
      )
    data = n // fsdp
  if data * fsdp != n:
    raise ValueError(
      f'make_mesh: data*fsdp = {data}*{fsdp} = {data * fsdp} does not equal '
      f'the number of devices ({n}); pass devices=jax.devices()[:k] to use '
      'a subset, or data=-1.'
    )
  return jax.make_mesh(
    (data, fsdp),
    BATCH_AXES,
    axis_types=(AxisType.Auto, AxisType.Auto),
    devices=devices,
  )


def num_batch_shards(mesh: Mesh) -> int:
  """Number of pieces the batch is split into (`data * fsdp`)."""
  return int(np.prod([mesh.shape[a] for a in BATCH_AXES if a in mesh.shape]))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding for `[B, ...]` arrays: `B` split over `('data', 'fsdp')`."""
  axes = tuple(a for a in BATCH_AXES if a in mesh.shape)
  return NamedSharding(mesh, P(axes))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding that keeps a full copy on every device of `mesh`."""
  return NamedSharding(mesh, P())


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """Puts every leaf's leading (batch) axis on the mesh's batch axes.

  Single process: `batch` is the global batch. Multi-process: `batch` is
  this process's slice of the global batch (as every data pipeline produces
  it), and the global array is assembled with
  `jax.make_array_from_process_local_data`.

  Args:
    batch: pytree of arrays, each `[B, ...]` with the same `B`.
    mesh: a mesh from `make_mesh`.

  Returns:
    The same pytree of `jax.Array`s sharded with `batch_sharding(mesh)`.

  Raises:
    ValueError: a leaf is a scalar, or `B` is not divisible by the number of
      batch shards.
  """
  sharding = batch_sharding(mesh)
  shards = num_batch_shards(mesh)
  multi = jax.process_count() > 1
  local_shards = shards // jax.process_count() if multi else shards

  def put(path, x):
    x = np.asarray(x) if not isinstance(x, jax.Array) else x
    name = jax.tree_util.keystr(path) or '<batch>'
    if x.ndim == 0:
      raise ValueError(
        f'shard_batch: leaf {name} is a scalar; every batch leaf needs a '
        'leading batch axis [B, ...].'
      )
    if x.shape[0] % local_shards:
      raise ValueError(
        f'shard_batch: batch size {x.shape[0]} of leaf {name} is not '
        f'divisible by the {local_shards} batch shards (devices on the '
        f"'data' x 'fsdp' axes{' of this process' if multi else ''}); use a "
        f'batch size that is a multiple of {local_shards}.'
      )
    if multi:
      return jax.make_array_from_process_local_data(sharding, np.asarray(x))
    return jax.device_put(x, sharding)

  return jax.tree_util.tree_map_with_path(put, batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Copies every leaf of `tree` to all devices of `mesh`."""
  return jax.device_put(tree, replicated(mesh))


def fsdp_spec(shape: Sequence[int], fsdp_size: int, min_size: int) -> P:
  """Partition spec that splits the largest axis divisible by `fsdp_size`.

  Args:
    shape: the array's shape.
    fsdp_size: size of the mesh's fsdp axis.
    min_size: arrays with fewer elements stay replicated.

  Returns:
    `P()` (replicated) or a spec with `'fsdp'` on one axis; ties between
    equally large axes go to the last one (usually the feature axis).
  """
  if fsdp_size <= 1 or not shape or int(np.prod(shape)) < min_size:
    return P()
  best = None
  for axis, dim in enumerate(shape):
    if dim % fsdp_size == 0 and (best is None or dim >= shape[best]):
      best = axis
  if best is None:
    return P()
  spec = [None] * len(shape)
  spec[best] = FSDP_AXIS
  return P(*spec)


def fsdp_sharding(tree: Any, mesh: Mesh, min_size: int = 2**12) -> Any:
  """Per-leaf shardings that split large arrays over the fsdp axis.

  Args:
    tree: pytree of arrays (or `jax.ShapeDtypeStruct`s), e.g. parameters
      and optimizer state.
    mesh: a mesh with an `'fsdp'` axis.
    min_size: leaves with fewer elements are replicated (splitting tiny
      biases costs more communication than it saves memory).

  Returns:
    A pytree of `NamedSharding` with the structure of `tree`.
  """
  size = mesh.shape.get(FSDP_AXIS, 1)
  return jax.tree.map(
    lambda x: NamedSharding(mesh, fsdp_spec(np.shape(x), size, min_size)),
    tree,
  )
