"""Scanned (stacked-layer) model, remat, bf16 mixed precision and FSDP.

The scanned model (`LMConfig.scan_layers=True`, one `jax.lax.scan` over
stacked blocks) must compute the same function as the unrolled one: same
logits, gradients, captures, KV-cache chunks and generations; remat
policies change memory, not values; FSDP-sharded training of the scanned
model over 8 CPU devices equals single-device training.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from common import models
from common import sampling
from common import train
from tests import tolerances as tol

_CFG = models.get_preset(
  'tiny', vocab_size=61, d_model=32, n_heads=4, n_kv_heads=2, d_ff=64,
  n_layers=3, qkv_bias=True, tie_embeddings=False,
)  # fmt: skip


def _pair(cfg=_CFG, **scanned):
  unrolled = models.Transformer(cfg, rngs=nnx.Rngs(0))
  scan = models.Transformer(
    cfg.replace(scan_layers=True, **scanned), rngs=nnx.Rngs(0)
  )
  return unrolled, scan


def _batch(b=8, t=10, seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(0, _CFG.vocab_size, (b, t)).astype(np.int32)
  lengths = rng.integers(2, t + 1, b)
  mask = np.arange(t)[None, :] >= (t - lengths)[:, None]  # left padding
  return {'tokens': jnp.asarray(tokens), 'attention_mask': jnp.asarray(mask)}


def _loss(graphdef):
  def loss(params, batch, rng=None):
    del rng
    logits = models.apply_fn(graphdef)(
      params, batch['tokens'], batch['attention_mask']
    )
    logp = jax.nn.log_softmax(logits[:, :-1], -1)
    nll = -jnp.take_along_axis(logp, batch['tokens'][:, 1:, None], -1)[..., 0]
    w = batch['attention_mask'][:, 1:] & batch['attention_mask'][:, :-1]
    return jnp.sum(nll * w) / jnp.sum(w)

  return loss


def _unrolled_grads(scanned_grads):
  return models.unstack_layers(scanned_grads.to_pure_dict())


def test_scanned_layout_and_same_initial_parameters():
  unrolled, scan = _pair()
  pure = nnx.state(scan, nnx.Param).to_pure_dict()
  kernel = pure['layers']['mlp']['gate_proj']['kernel']
  assert kernel.shape == (3, 32, 64)  # [L, D, F]
  assert pure['layers']['attn']['q_proj']['bias'].shape == (3, 32)
  # Built from the same random draws in the same order: identical values
  # (exact by construction, so exact equality).
  chex.assert_trees_all_equal(
    models.unstack_layers(pure),
    nnx.state(unrolled, nnx.Param).to_pure_dict(),
  )
  back = models.with_layout(scan, scan_layers=False)
  assert not back.config.scan_layers
  chex.assert_trees_all_equal(
    nnx.state(back, nnx.Param).to_pure_dict(),
    nnx.state(unrolled, nnx.Param).to_pure_dict(),
  )
  assert models.with_layout(scan, scan_layers=True) is scan


def test_layout_errors_name_the_layout():
  with pytest.raises(ValueError, match='unrolled'):
    models.stack_layers({'layers': {'attn': {}}})
  with pytest.raises(ValueError, match='scanned'):
    models.unstack_layers({'layers': {0: {'x': jnp.zeros(2)}}})
  with pytest.raises(ValueError, match='remat'):
    _CFG.replace(remat='some').validate()
  with pytest.raises(ValueError, match='scan_layers'):
    _CFG.replace(scan_layers=1).validate()


def test_scanned_equals_unrolled_logits_and_grads_on_8_devices():
  unrolled, scan = _pair()
  batch = _batch()
  mesh = train.make_mesh()
  assert mesh.devices.size == 8
  sharded = train.shard_batch(batch, mesh)
  results = []
  for model in (unrolled, scan):
    graphdef, params = models.split(model)
    params = train.replicate(params, mesh)
    fn = jax.jit(jax.value_and_grad(_loss(graphdef)))
    logits = jax.jit(models.apply_fn(graphdef))(
      params, sharded['tokens'], sharded['attention_mask']
    )
    assert len(logits.sharding.device_set) == 8
    results.append((logits, *fn(params, sharded)))
  (lu, loss_u, gu), (ls, loss_s, gs) = results
  mask = np.asarray(batch['attention_mask'])
  # Same arithmetic, a loop instead of unrolled code: float32 rounding of
  # another fusion of the same matmul chain.
  tol.assert_close(np.asarray(ls)[mask], np.asarray(lu)[mask], tol.FEW_OPS)
  tol.assert_close(loss_s, loss_u, tol.FEW_OPS)
  tol.assert_trees_close(_unrolled_grads(gs), gu.to_pure_dict(), tol.FEW_OPS)
  assert (
    float(jnp.abs(gu['layers'][0]['mlp']['up_proj']['kernel'][...]).max())
    > 1e-4
  )


@pytest.mark.slow  # compiles several training programs
@pytest.mark.parametrize('remat', ['full', 'dots', 'dots_no_batch'])
def test_remat_changes_no_value(remat):
  _, scan = _pair()
  _, scan_remat = _pair(remat=remat)
  unrolled_remat = models.Transformer(
    _CFG.replace(remat=remat), rngs=nnx.Rngs(0)
  )
  batch = _batch(4, 8, seed=1)
  want = None
  for model in (scan, scan_remat, unrolled_remat):
    graphdef, params = models.split(model)
    loss, grads = jax.jit(jax.value_and_grad(_loss(graphdef)))(params, batch)
    grads = grads.to_pure_dict()
    if model.config.scan_layers:
      grads = models.unstack_layers(grads)
    if want is None:
      want = (loss, grads)
      continue
    tol.assert_close(loss, want[0], tol.FEW_OPS)
    tol.assert_trees_close(grads, want[1], tol.FEW_OPS)


def test_remat_is_in_the_backward_program():
  """'full' recomputes the forward inside the backward pass: the jaxpr of
  the gradient holds a `checkpoint` (remat) primitive."""
  _, scan_remat = _pair(remat='full')
  graphdef, params = models.split(scan_remat)
  jaxpr = jax.make_jaxpr(jax.grad(_loss(graphdef)))(params, _batch(2, 4))
  assert 'checkpoint' in str(jaxpr) or 'remat' in str(jaxpr)


@pytest.mark.slow  # compiles several training programs
def test_captures_and_mlp_delta_gradients_equal_unrolled():
  unrolled, scan = _pair()
  batch = _batch(2, 6, seed=2)

  def loss(logits, batch):
    return jnp.sum(jnp.sin(logits) * batch['attention_mask'][..., None])

  outs = [
    jax.jit(models.mlp_hidden_grads(models.split(m)[0], loss))(
      models.split(m)[1], batch
    )
    for m in (unrolled, scan)
  ]
  for got, want in zip(outs[1], outs[0], strict=True):
    assert got.shape == (3, 2, 6, 64)
    tol.assert_close(got, want, tol.FEW_OPS)
  caps = [
    models.capture_fn(models.split(m)[0], models.CAPTURE_NAMES)(
      models.split(m)[1], batch['tokens'], batch['attention_mask']
    )
    for m in (unrolled, scan)
  ]
  tol.assert_trees_close(caps[1], caps[0], tol.FEW_OPS)


@pytest.mark.slow  # ~30-80 s on 2 cores: make test-all runs it
def test_kv_cache_chunks_and_generation_with_scanned_model():
  unrolled, scan = _pair()
  batch = _batch(3, 8, seed=3)
  tokens, mask = batch['tokens'], batch['attention_mask']
  # Two ragged chunks through the cache == one full forward.
  full = scan(tokens, attention_mask=mask).logits
  cache = models.init_cache(scan.config, 3, 16)
  a = scan(tokens[:, :5], attention_mask=mask[:, :5], cache=cache)
  b = scan(tokens[:, 5:], attention_mask=mask[:, 5:], cache=a.cache)
  got = jnp.concatenate([a.logits, b.logits], axis=1)
  m = np.asarray(mask)
  tol.assert_close(np.asarray(got)[m], np.asarray(full)[m], tol.REDUCTION)
  # The sampler: greedy tokens equal the unrolled model's, log-probs close.
  cfg = sampling.GenerationConfig(max_new_tokens=6, temperature=0.0)
  outs = [
    sampling.Sampler(model, capacity=16).sample(
      tokens, mask, jax.random.key(0), cfg
    )
    for model in (unrolled, scan)
  ]
  np.testing.assert_array_equal(outs[1].tokens, outs[0].tokens)  # ints
  tol.assert_close(outs[1].logprobs, outs[0].logprobs, tol.REDUCTION)


@pytest.mark.slow  # compiles several training programs
def test_bf16_mixed_precision_scanned():
  """bfloat16 compute on float32 master weights: float32 parameters and
  gradients, float32 logits, values within bfloat16 rounding of float32."""
  _, scan32 = _pair()
  _, scan16 = _pair(dtype='bfloat16')
  batch = _batch(4, 8, seed=4)
  g32, p32 = models.split(scan32)
  g16, p16 = models.split(scan16)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(p16))
  l32 = models.apply_fn(g32)(p32, batch['tokens'], batch['attention_mask'])
  l16 = models.apply_fn(g16)(p16, batch['tokens'], batch['attention_mask'])
  assert l16.dtype == jnp.float32
  m = np.asarray(batch['attention_mask'])
  tol.assert_close(np.asarray(l16)[m], np.asarray(l32)[m], tol.BF16)
  loss32, grads32 = jax.jit(jax.value_and_grad(_loss(g32)))(p32, batch)
  loss16, grads16 = jax.jit(jax.value_and_grad(_loss(g16)))(p16, batch)
  assert loss16.dtype == jnp.float32
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(grads16))
  tol.assert_close(loss16, loss32, tol.BF16)
  # Gradients: the direction survives bfloat16 rounding.
  a = jnp.concatenate([x.ravel() for x in jax.tree.leaves(grads16)])
  b = jnp.concatenate([x.ravel() for x in jax.tree.leaves(grads32)])
  cos = jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))
  assert float(cos) > 0.99


@pytest.mark.slow  # compiles several training programs
def test_fsdp_training_of_scanned_model_equals_single_device(tmp_path):
  cfg = _CFG.replace(scan_layers=True, remat='dots_no_batch')
  graphdef, _ = models.split(models.Transformer(cfg, rngs=nnx.Rngs(0)))
  tx = optax.adamw(1e-2, weight_decay=1e-2)
  step_fn = train.make_train_step(_loss(graphdef), tx)

  def init():
    _, params = models.split(models.Transformer(cfg, rngs=nnx.Rngs(0)))
    return train.TrainState.create(params, tx, rng=jax.random.key(0))

  def batches(step):
    return {k: np.asarray(v) for k, v in _batch(8, 8, seed=10 + step).items()}

  kw = dict(num_steps=3, log_every=1, checkpoint_every=None, progress=False)
  s1, h1 = train.fit(
    init(), step_fn, batches, workdir=tmp_path / 'one',
    mesh=train.make_mesh(devices=jax.devices()[:1]), **kw,
  )  # fmt: skip
  mesh = train.make_mesh(data=2, fsdp=4)
  state = init()
  sharding = train.train_state_sharding(state, mesh, fsdp=True, min_size=0)
  sf, hf = train.fit(
    state, step_fn, batches, workdir=tmp_path / 'fsdp', mesh=mesh,
    state_sharding=sharding, **kw,
  )  # fmt: skip
  # The stacked kernels really are split over 'fsdp' (on a non-layer axis).
  kernel = sf.params['layers']['mlp']['gate_proj']['kernel'][...]
  assert kernel.shape == (3, 32, 64)
  assert 'fsdp' in kernel.sharding.spec
  assert kernel.addressable_shards[0].data.size == kernel.size // 4
  # Another summation order over 3 Adam steps (each moves params by ~lr).
  tol.assert_trees_close(sf.params, s1.params, tol.REDUCTION)
  tol.assert_close(
    [r['loss'] for r in hf], [r['loss'] for r in h1], tol.REDUCTION
  )
  assert hf[-1]['loss'] < hf[0]['loss']  # it trained


def test_hf_load_and_save_with_scanned_model(tmp_path):
  unrolled, scan = _pair()
  models.save_hf(scan, scan.config, str(tmp_path / 's'))
  models.save_hf(unrolled, unrolled.config, str(tmp_path / 'u'))
  a = models.hf.read_safetensors(str(tmp_path / 's'))
  b = models.hf.read_safetensors(str(tmp_path / 'u'))
  chex.assert_trees_all_equal(a, b)  # same values, same names: exact
  config, loaded = models.load_hf(
    str(tmp_path / 'u'), scan_layers=True, remat='full'
  )
  assert config.scan_layers and config.remat == 'full'
  assert loaded.config == config
  chex.assert_trees_all_equal(
    nnx.state(loaded, nnx.Param).to_pure_dict(),
    nnx.state(scan, nnx.Param).to_pure_dict(),
  )
