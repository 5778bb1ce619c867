"""Meshes, batch sharding, FSDP specs, distributed start-up."""

import jax
import numpy as np
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

from common import train
from common.train import mesh as mesh_lib


def test_make_mesh_shapes_and_auto_axes():
  mesh = train.make_mesh()
  assert mesh.axis_names == ('data', 'fsdp')
  assert mesh.shape == {'data': 8, 'fsdp': 1}
  assert mesh.axis_types == (AxisType.Auto, AxisType.Auto)
  mesh = train.make_mesh(fsdp=2)
  assert mesh.shape == {'data': 4, 'fsdp': 2}
  mesh = train.make_mesh(data=3, devices=jax.devices()[2:5])
  assert mesh.shape == {'data': 3, 'fsdp': 1}
  assert list(mesh.devices.flat) == jax.devices()[2:5]


@pytest.mark.parametrize(
  'kwargs, match',
  [
    (dict(data=3), r'3\*1 = 3 does not equal the number of devices \(8\)'),
    (dict(fsdp=3), 'fsdp=3 does not divide the 8 devices'),
    (dict(fsdp=0), 'fsdp=0 must be an int >= 1'),
    (dict(data=0), 'data=0 must be -1 or an int >= 1'),
    (dict(devices=[]), 'devices is empty'),
  ],
)
def test_make_mesh_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    train.make_mesh(**kwargs)


def test_shard_batch_splits_leading_axis_over_data_and_fsdp():
  mesh = train.make_mesh(data=4, fsdp=2)
  x = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
  out = train.shard_batch({'x': x, 'y': x[:, 0]}, mesh)
  assert out['x'].sharding.spec == P(('data', 'fsdp'))
  assert {s.data.shape for s in out['x'].addressable_shards} == {(2, 3)}
  # Each device holds a distinct slice of rows; together they cover all.
  rows = sorted(int(s.data[0, 0]) // 3 for s in out['x'].addressable_shards)
  assert rows == list(range(0, 16, 2))
  np.testing.assert_array_equal(np.asarray(out['x']), x)


def test_shard_batch_errors_name_size_and_devices():
  mesh = train.make_mesh()
  with pytest.raises(ValueError, match=r"batch size 12 of leaf \['x'\].*8"):
    train.shard_batch({'x': np.zeros((12, 2))}, mesh)
  with pytest.raises(ValueError, match='is a scalar'):
    train.shard_batch({'t': np.float32(1.0)}, mesh)


def test_replicate_puts_full_copy_on_each_device():
  mesh = train.make_mesh()
  tree = train.replicate({'w': np.ones((3, 5))}, mesh)
  assert tree['w'].sharding.spec == P()
  assert [s.data.shape for s in tree['w'].addressable_shards] == [(3, 5)] * 8


@pytest.mark.parametrize(
  'shape, size, min_size, spec',
  [
    ((4, 16), 2, 0, P(None, 'fsdp')),  # largest divisible axis
    ((16, 4), 2, 0, P('fsdp', None)),
    ((8, 8), 2, 0, P(None, 'fsdp')),  # tie: last axis
    ((6, 5), 4, 0, P()),  # nothing divisible by 4
    ((12, 10), 4, 0, P('fsdp', None)),  # 12 divisible, 10 is not
    ((4, 16), 2, 65, P()),  # 64 elements < min_size
    ((4, 16), 1, 0, P()),  # no fsdp axis to split over
    ((), 2, 0, P()),  # scalar
  ],
)
def test_fsdp_spec_hand_cases(shape, size, min_size, spec):
  assert mesh_lib.fsdp_spec(shape, size, min_size) == spec


def test_fsdp_sharding_tree():
  mesh = train.make_mesh(data=2, fsdp=4)
  tree = {'k': np.zeros((64, 128)), 'b': np.zeros((128,)), 'n': np.zeros(3)}
  sh = train.fsdp_sharding(tree, mesh, min_size=100)
  assert sh['k'].spec == P(None, 'fsdp')
  assert sh['b'].spec == P('fsdp')
  assert sh['n'].spec == P()


def test_maybe_initialize_distributed_is_noop_single_process(monkeypatch):
  for var in mesh_lib._DISTRIBUTED_ENV:
    monkeypatch.delenv(var, raising=False)
  assert train.maybe_initialize_distributed() is False
  # A one-task SLURM allocation is not a distributed job either.
  monkeypatch.setenv('SLURM_NTASKS', '1')
  assert train.maybe_initialize_distributed() is False


def test_maybe_initialize_distributed_passes_explicit_env(monkeypatch):
  calls = []
  for var in mesh_lib._DISTRIBUTED_ENV:
    monkeypatch.delenv(var, raising=False)
  monkeypatch.setenv('JAX_COORDINATOR_ADDRESS', '10.0.0.1:1234')
  monkeypatch.setenv('JAX_NUM_PROCESSES', '4')
  monkeypatch.setenv('JAX_PROCESS_ID', '2')
  monkeypatch.setattr(
    jax.distributed, 'initialize', lambda **kw: calls.append(kw)
  )
  assert train.maybe_initialize_distributed() is True
  assert calls == [
    dict(coordinator_address='10.0.0.1:1234', num_processes=4, process_id=2)
  ]
