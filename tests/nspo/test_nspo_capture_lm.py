"""Capture glue on a real common.models Transformer."""

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import nspo
from common import models
from nspo import capture

SITES = ('mlp_in', 'mlp_hidden', 'attn_in', 'attn_out')


def _model():
  cfg = models.get_preset(
    'tiny', vocab_size=40, d_model=16, n_layers=2, d_ff=32, n_heads=2,
    n_kv_heads=1, max_seq_len=32,
  )  # fmt: skip
  mdef, params = models.split(models.Transformer(cfg, rngs=nnx.Rngs(0)))
  return cfg, mdef, params


def _batches(n=2, b=4, t=6, vocab=12):
  """General sequences use only ids < vocab (a low-rank input subspace)."""
  rng = np.random.default_rng(0)
  out = []
  for _ in range(n):
    tokens = rng.integers(1, vocab, (b, t)).astype(np.int32)
    mask = np.ones((b, t), bool)
    mask[0, :2] = False  # left padding
    out.append((tokens, mask))
  return out


def test_collect_matches_captured_outer_products():
  cfg, mdef, params = _model()
  fn = models.capture_fn(mdef, SITES)
  batches = _batches()
  dims = capture.site_dims(cfg, SITES)
  assert dims == {
    'mlp_in': (2, 16), 'mlp_hidden': (2, 32), 'attn_in': (2, 16),
    'attn_out': (2, 16),
  }  # fmt: skip
  stats, info = capture.collect(fn, params, batches, dims)
  assert info['tokens'] == 2 * (24 - 2)
  for site in SITES:
    want = np.zeros(stats.sums[site].shape)
    for tokens, mask in batches:
      x = np.asarray(fn(params, tokens, mask)[site], np.float64)
      xm = x[:, mask]  # [L, N, d]
      want += np.einsum('lni,lnj->lij', xm, xm)
    np.testing.assert_allclose(stats.sums[site], want, rtol=2e-4, atol=1e-5)
  with pytest.raises(ValueError, match='unknown capture site'):
    capture.site_dims(cfg, ['mlp_out'])


def test_projected_update_keeps_every_layer_output_on_general_inputs():
  cfg, mdef, params = _model()
  fn = models.capture_fn(mdef, SITES)
  # 2 x 3 + 3 = 9 tokens < 16 dims: every layer input has a null space.
  batches = _batches(n=2, b=2, t=3)
  stats, _ = capture.collect(fn, params, batches, capture.site_dims(cfg, SITES))
  spaces = nspo.estimate(stats, nspo.relative(1e-5))
  tx = optax.chain(optax.adam(1e-2), nspo.project(spaces))
  grads = jax.tree.map(
    lambda x: jax.random.normal(jax.random.key(1), x.shape), params
  )
  u, _ = tx.update(grads, tx.init(params), params)
  kernels = {
    'mlp_in': ('mlp', ('gate_proj', 'up_proj')),
    'mlp_hidden': ('mlp', ('down_proj',)),
    'attn_in': ('attn', ('q_proj', 'k_proj', 'v_proj')),
    'attn_out': ('attn', ('o_proj',)),
  }
  for tokens, mask in batches:
    acts = fn(params, tokens, mask)
    for site, (block, names) in kernels.items():
      for layer in range(cfg.n_layers):
        x = np.asarray(acts[site][layer][mask], np.float64)
        for name in names:
          du = np.asarray(u['layers'][layer][block][name]['kernel'][...])
          assert np.linalg.norm(du) > 1e-3, (site, layer, name)
          rel = np.linalg.norm(x @ du) / (
            np.linalg.norm(x) * np.linalg.norm(du)
          )
          assert rel < 1e-3, (site, layer, name, rel)
