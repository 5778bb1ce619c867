"""split/apply_fn helpers: token log-probs, captures, MLP hidden gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common import models
from tests import tolerances as tol


def _model():
  cfg = models.get_preset(
    'tiny', vocab_size=40, d_model=16, n_layers=2, d_ff=32, n_heads=2,
    n_kv_heads=1, max_seq_len=32,
  )  # fmt: skip
  graphdef, params = models.split(models.Transformer(cfg, rngs=nnx.Rngs(0)))
  return cfg, graphdef, params


def _batch(b=4, t=6):
  rng = np.random.default_rng(0)
  tokens = rng.integers(1, 12, (b, t)).astype(np.int32)
  mask = np.ones((b, t), bool)
  mask[0, :2] = False  # left padding
  return {'tokens': tokens, 'attention_mask': mask}


def test_token_logprobs_match_log_softmax_of_apply_fn():
  _, graphdef, params = _model()
  batch = _batch()
  lp = models.token_logprobs(graphdef, params, batch)
  logits = models.apply_fn(graphdef)(
    params, batch['tokens'], batch['attention_mask']
  )
  ls = np.asarray(jax.nn.log_softmax(logits, -1))
  want = np.zeros(lp.shape)
  for b in range(lp.shape[0]):
    for t in range(1, lp.shape[1]):
      want[b, t] = ls[b, t - 1, batch['tokens'][b, t]]
  assert lp.shape == (4, 6)
  # The same log_softmax in two programs: a few float32 ops, whose error is
  # relative to the logits the log-probs come from.
  tol.assert_close(lp, want, tol.FEW_OPS, scale=tol.magnitude(logits))


def test_capture_fn_shapes_and_mlp_in_matches_the_model():
  cfg, graphdef, params = _model()
  batch = _batch()
  sites = ('mlp_in', 'mlp_hidden', 'attn_in', 'attn_out')
  out = models.capture_fn(graphdef, sites)(
    params, batch['tokens'], batch['attention_mask']
  )
  widths = {'mlp_in': 16, 'mlp_hidden': 32, 'attn_in': 16, 'attn_out': 16}
  for site in sites:
    assert out[site].shape == (cfg.n_layers, 4, 6, widths[site]), site
  model = models.merge(graphdef, params)
  direct = model(
    batch['tokens'],
    attention_mask=batch['attention_mask'],
    capture=('mlp_in',),
  ).captured['mlp_in']
  np.testing.assert_array_equal(out['mlp_in'], direct)


def test_mlp_hidden_grads_match_finite_differences():
  _, graphdef, params = _model()
  batch = _batch()
  tokens, mask = batch['tokens'], batch['attention_mask']

  def loss_from_logits(logits, batch):
    m = batch['attention_mask'].astype(jnp.float32)
    return jnp.mean(jax.nn.log_softmax(logits)[..., 3] * m)

  hidden, grads = jax.jit(models.mlp_hidden_grads(graphdef, loss_from_logits))(
    params, batch
  )
  assert hidden.shape == grads.shape == (2, 4, 6, 32)
  model = models.merge(graphdef, params)

  def loss_at(delta):
    out = model(tokens, attention_mask=mask, mlp_hidden_delta=delta)
    return float(loss_from_logits(out.logits, batch))

  zeros = np.zeros((2, 4, 6, 32), np.float32)
  h = 1e-2
  # rtol: the O(h^2) truncation error; atol: rounding of the two losses.
  atol = tol.fd_atol(loss_at(zeros), h)
  for idx in [(0, 1, 2, 5), (1, 3, 5, 17)]:
    e = zeros.copy()
    e[idx] = h
    fd = (loss_at(e) - loss_at(-e)) / (2 * h)
    np.testing.assert_allclose(grads[idx], fd, rtol=2e-2, atol=atol)


def test_build_config_preset_plus_overrides():
  cfg = models.build_config(
    {'preset': 'tiny', 'd_model': 24, 'n_layers': 3, 'hf_dir': '/x'},
    vocab_size=50,
    max_seq_len=16,
  )
  assert (cfg.d_model, cfg.n_layers, cfg.vocab_size) == (24, 3, 50)
  assert cfg.max_seq_len == 16
  with pytest.raises(ValueError, match='needs a preset'):
    models.build_config({'d_model': 8})
  with pytest.raises(ValueError, match=r"\['layers'\] are not LMConfig"):
    models.build_config({'preset': 'tiny', 'layers': 2})
