"""Tests for common.parallel.ring_attention: zig-zag layout, ring == dense."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from common.parallel import ring_attention as ra
from tests import tolerances as tol


def test_zigzag_layout_hand_computed():
  # One sequence of 7 tokens on d=2: padded to 8, chunks of 2:
  # device 0 holds chunks 0 and 3, device 1 chunks 1 and 2.
  lay = ra.zigzag_layout([7], 2)
  np.testing.assert_array_equal(lay.source, [0, 1, 6, -1, 2, 3, 4, 5])
  np.testing.assert_array_equal(lay.segment, [0, 0, 0, -1, 0, 0, 0, 0])
  np.testing.assert_array_equal(lay.position, [0, 1, 6, 0, 2, 3, 4, 5])


def test_zigzag_layout_packs_sequences_and_pads_tail():
  lay = ra.zigzag_layout([3, 4], 1, total_len=10)
  # d=1: the "a" halves (chunk 0) of both sequences and of the padding
  # tail, then their "b" halves (chunk 1).
  np.testing.assert_array_equal(lay.source, [0, 1, 3, 4, -1, 2, -1, 5, 6, -1])
  np.testing.assert_array_equal(lay.segment, [0, 0, 1, 1, -1, 0, -1, 1, 1, -1])
  np.testing.assert_array_equal(lay.position, [0, 1, 0, 1, 0, 2, 0, 2, 3, 0])
  assert ra.padded_length([3, 4], 1) == 8
  assert ra.padded_length([13, 7], 3) == 18 + 12


def test_zigzag_layout_bad_input():
  with pytest.raises(ValueError, match='degree'):
    ra.zigzag_layout([4], 0)
  with pytest.raises(ValueError, match='total_len'):
    ra.zigzag_layout([7], 2, total_len=6)
  with pytest.raises(ValueError, match='total_len'):
    ra.zigzag_layout([7], 2, total_len=10)
  with pytest.raises(ValueError, match='seq_lens'):
    ra.zigzag_layout([], 2)


def _inputs(lens, degree, extra=0):
  lay = ra.zigzag_layout(
    lens, degree, ra.padded_length(lens, degree) + 2 * degree * extra
  )
  qkv = jax.random.normal(jax.random.key(degree), (3, sum(lens), 2, 4))
  src = lay.source
  take = lambda x: np.where(
    (src >= 0)[:, None, None], np.asarray(x)[np.maximum(src, 0)], 0.0
  )
  return [take(x) for x in qkv] + [lay.segment, lay.position]


def _ring(degree, offset):
  mesh = jax.make_mesh(
    (degree,),
    ('cp',),
    (AxisType.Explicit,),
    devices=jax.devices()[offset : offset + degree],
  )
  fn = jax.shard_map(
    functools.partial(ra.ring_attention, axis_name='cp', axis_size=degree),
    mesh=mesh,
    in_specs=P('cp'),
    out_specs=P('cp'),
  )
  return mesh, fn


@pytest.mark.parametrize(
  'degree,offset',
  [
    (3, 0),
    (5, 3),
    pytest.param(1, 7, marks=pytest.mark.slow),
    pytest.param(6, 2, marks=pytest.mark.slow),
  ],
)
def test_ring_matches_dense(degree, offset):
  args = _inputs([13, 30, 5], degree, extra=1)
  mesh, fn = _ring(degree, offset)
  sharded = [jax.device_put(x, NamedSharding(mesh, P('cp'))) for x in args]
  with jax.set_mesh(mesh):
    out = jax.jit(fn)(*sharded)
  ref = ra.dense_attention(*args)
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5)
  pad = args[3] < 0
  assert np.all(np.asarray(out)[pad] == 0)


class RingVariantsTest(chex.TestCase):
  """Dense attention under jit and without; the ring under pmap and fakes."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_dense_attention_is_causal_per_segment(self):
    q, k, v, seg, pos = _inputs([6, 5], 1)
    out = self.variant(ra.dense_attention)(q, k, v, seg, pos)
    chex.assert_equal_shape([out, q])
    chex.assert_tree_all_finite(out)
    # The first token of each sequence attends only to itself.
    first = np.nonzero((pos == 0) & (seg >= 0))[0]
    np.testing.assert_allclose(np.asarray(out)[first], v[first], atol=1e-6)
    # Padding queries give exactly 0 (a constant, not a computed value).
    chex.assert_trees_all_equal(np.asarray(out)[seg < 0], 0.0 * v[seg < 0])

  @parameterized.named_parameters(
    ('pmap', False),  # jax.pmap over 3 of the 8 CPU devices
    ('fake_pmap', True),  # chex.fake_pmap: the same program as a vmap
  )
  def test_ring_under_pmap_matches_dense(self, fake):
    degree = 3
    args = _inputs([13, 30, 5], degree, extra=1)
    # zig-zag order is device-major: row r of the reshape is device r's shard.
    shards = [np.reshape(x, (degree, -1) + np.shape(x)[1:]) for x in args]
    fn = functools.partial(ra.ring_attention, axis_name='cp', axis_size=degree)
    with chex.fake_pmap(enable_patching=fake):
      ring = jax.pmap(fn, axis_name='cp', devices=jax.devices()[:degree])
      out = np.reshape(ring(*shards), np.shape(args[0]))
    ref = ra.dense_attention(*args)
    # Online softmax over the ring vs one softmax: O(1) values, a few ops.
    chex.assert_trees_all_close(out, ref, rtol=0.0, atol=tol.FEW_OPS)

  @pytest.mark.slow  # eager shard_map, op by op: ~35 s on a loaded 2-core host
  def test_ring_steps_through_eagerly_under_fake_jit(self):
    # chex.fake_jit runs the shard_map'ed ring op by op (breakpoints work).
    degree = 2
    args = _inputs([5, 6], degree)
    mesh, fn = _ring(degree, 0)
    sharded = [jax.device_put(x, NamedSharding(mesh, P('cp'))) for x in args]
    with chex.fake_jit(), jax.set_mesh(mesh):
      out = jax.jit(fn)(*sharded)
    ref = ra.dense_attention(*args)
    chex.assert_trees_all_close(
      np.asarray(out), ref, rtol=0.0, atol=tol.FEW_OPS
    )


@pytest.mark.slow
def test_ring_gradients_match_dense():
  degree = 3
  args = _inputs([11, 20], degree)
  mesh, fn = _ring(degree, 2)
  sharded = [jax.device_put(x, NamedSharding(mesh, P('cp'))) for x in args]

  def ring_loss(q, k, v):
    return (fn(q, k, v, *sharded[3:]) ** 2).sum()

  def dense_loss(q, k, v):
    return (ra.dense_attention(q, k, v, *args[3:]) ** 2).sum()

  with jax.set_mesh(mesh):
    g_ring = jax.jit(jax.grad(ring_loss, (0, 1, 2)))(*sharded[:3])
  g_dense = jax.grad(dense_loss, (0, 1, 2))(*[jnp.asarray(x) for x in args[:3]])
  for a, b in zip(g_ring, g_dense, strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
