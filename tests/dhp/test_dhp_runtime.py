"""Tests for dhp.runtime: a DHP step equals a single-device step."""

import jax
import numpy as np
import optax
import pytest

from dhp import cost_model as cm
from dhp import model as model_lib
from dhp import plan_types as pt
from dhp import planner as pl
from dhp import runtime as rt

CFG = model_lib.ModelConfig(
  vocab_size=16, d_model=16, num_heads=2, num_layers=1, d_ff=32, max_len=128
)
FAST = {'xla_backend_optimization_level': 0}


def _sequences(lens, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.integers(0, CFG.vocab_size, n) for n in lens]


def _plan(groups):
  """RoundPlan from (seq_ids, degree, offset) triples."""
  return pt.RoundPlan(
    tuple(pt.GroupPlan(np.array(ids), d, off, 1.0) for ids, d, off in groups),
    8,
    1.0,
  )


def _max_diff(a, b):
  return max(
    float(np.abs(np.asarray(x) - np.asarray(y)).max())
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


def test_bucket_length_ladder():
  assert rt.bucket_length(1, 3) == 6
  assert rt.bucket_length(13, 3) == 18  # 3 units of 6
  assert rt.bucket_length(25, 3) == 36  # 5 units -> 6
  assert rt.bucket_length(300 * 6, 3) == 512 * 6
  for n in range(1, 200):
    b = rt.bucket_length(n, 5)
    assert b >= n and b % 10 == 0


def test_pack_group_targets_and_weights():
  host = rt.pack_group([np.array([5, 6, 7]), np.array([9, 8])], 1)
  # d=1 layout: a halves [5, 6 | 9], b halves [7, pad | 8].
  np.testing.assert_array_equal(host['tokens'], [5, 6, 9, 7, 0, 8])
  np.testing.assert_array_equal(host['targets'], [6, 7, 8, 0, 0, 0])
  np.testing.assert_array_equal(host['weights'], [1, 1, 1, 0, 0, 0])


def test_executable_cache_counts():
  cache = rt.ExecutableCache()
  assert cache.get('a', lambda: 1) == 1
  assert cache.get('a', lambda: 2) == 1
  assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)
  assert cache.hit_rate == 0.5


def test_dhp_step_matches_single_device():
  seqs = _sequences([40, 9, 23, 70, 5, 31, 12])
  plan = _plan([([3, 1], 3, 0), ([0, 2, 4, 5, 6], 5, 3)])
  runtime = rt.DHPRuntime(CFG, optax.sgd(0.1), compiler_options=FAST)
  params0 = model_lib.init_params(jax.random.key(0), CFG)
  params, opt_state = runtime.init(params0)
  loss, grads, count = runtime.loss_and_grads(params, seqs, plan)
  ref_loss, ref_grads = rt.reference_loss_and_grads(params0, seqs, CFG)
  assert count == sum(len(s) - 1 for s in seqs)
  assert loss == pytest.approx(ref_loss, abs=1e-5)
  assert _max_diff(grads, ref_grads) < 1e-5
  assert grads['embed'].sharding.is_fully_replicated
  assert len(runtime.cache) == 2 and runtime.cache.misses == 2
  # The optimizer step equals SGD on the reference gradient.
  new_params, _, _ = runtime.step(params, opt_state, seqs, plan)
  expected = jax.tree.map(
    lambda p, g: np.asarray(p) - 0.1 * np.asarray(g), params0, ref_grads
  )
  assert _max_diff(new_params, expected) < 1e-5
  assert runtime.cache.hits == 2  # same groups, same buckets


def test_regroup_is_zero_copy():
  runtime = rt.DHPRuntime(CFG, optax.sgd(0.1))
  params, _ = runtime.init(model_lib.init_params(jax.random.key(1), CFG))
  mesh = runtime.submesh(2, 5)
  sub = runtime.regroup(params, mesh)
  for full, part in zip(
    jax.tree.leaves(params), jax.tree.leaves(sub), strict=True
  ):
    pointers = {
      s.device: s.data.unsafe_buffer_pointer() for s in full.addressable_shards
    }
    assert part.sharding.mesh.devices.tolist() == jax.devices()[2:7]
    for s in part.addressable_shards:
      assert s.data.unsafe_buffer_pointer() == pointers[s.device]


def test_bad_input_raises():
  runtime = rt.DHPRuntime(CFG, optax.sgd(0.1))
  params, _ = runtime.init(model_lib.init_params(jax.random.key(1), CFG))
  with pytest.raises(ValueError, match='outside'):
    runtime.submesh(6, 3)
  with pytest.raises(ValueError, match='>= 2 tokens'):
    runtime.loss_and_grads(params, _sequences([5, 1]), _plan([([0, 1], 2, 0)]))
  with pytest.raises(ValueError, match='overlaps'):
    runtime.loss_and_grads(
      params, _sequences([5, 6]), _plan([([0], 3, 0), ([1], 3, 2)])
    )
  with pytest.raises(ValueError, match='at least one device'):
    rt.DHPRuntime(CFG, optax.sgd(0.1), devices=[])
  with pytest.raises(ValueError, match='num_heads'):
    model_lib.ModelConfig(d_model=10, num_heads=4)


@pytest.mark.slow
def test_planned_training_matches_single_device_over_steps():
  cost = cm.CostModel(a1=1e-3, a2=1e-1, num_layers=1)
  runtime = rt.DHPRuntime(CFG, optax.adam(3e-3), compiler_options=FAST)
  params0 = model_lib.init_params(jax.random.key(0), CFG)
  params, opt_state = runtime.init(params0)
  ref_params, ref_opt = params0, optax.adam(3e-3).init(params0)
  for step in range(3):
    seqs = _sequences([40, 9, 23, 70, 5, 31, 12, 55], seed=step)
    plan = pl.plan_round(np.array([len(s) for s in seqs]), 8, 48, cost)
    params, opt_state, loss = runtime.step(params, opt_state, seqs, plan)
    ref_loss, g = rt.reference_loss_and_grads(ref_params, seqs, CFG)
    updates, ref_opt = optax.adam(3e-3).update(g, ref_opt, ref_params)
    ref_params = optax.apply_updates(ref_params, updates)
    assert loss == pytest.approx(ref_loss, abs=1e-5)
  assert _max_diff(params, ref_params) < 1e-4


def test_batch_step_accumulates_rounds_like_one_dense_step():
  lens = [40, 9, 23, 70, 5, 31, 12, 18]
  seqs = _sequences(lens, 3)
  # 208 tokens on 4 ranks of 32: at least two rounds.
  cost = cm.CostModel(a1=1e-3, a2=1e-1)
  batch = pl.plan_batch(np.array(lens), 4, 32, cost)
  assert len(batch.rounds) >= 2
  runtime = rt.DHPRuntime(
    CFG, optax.adam(1e-2), jax.devices()[:4], compiler_options=FAST
  )
  params0 = model_lib.init_params(jax.random.key(1), CFG)
  params, opt_state = runtime.init(params0)
  loss, grads, count = runtime.accumulate(params, seqs, batch)
  ref_loss, ref_grads = rt.reference_loss_and_grads(params0, seqs, CFG)
  assert count == sum(n - 1 for n in lens)
  assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-5)
  assert _max_diff(grads, ref_grads) < 1e-5
  # One Adam step on the batch equals one dense Adam step.
  new, _, step_loss = runtime.batch_step(params, opt_state, seqs, batch)
  tx = optax.adam(1e-2)
  updates, _ = tx.update(ref_grads, tx.init(params0), params0)
  want = optax.apply_updates(params0, updates)
  assert step_loss == pytest.approx(loss, rel=1e-6)
  assert _max_diff(new, want) < 1e-5
  with pytest.raises(ValueError, match='exactly one group'):
    runtime.accumulate(params, seqs + seqs[:1], batch)
