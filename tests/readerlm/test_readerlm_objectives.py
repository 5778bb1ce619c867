"""SimCTG contrastive loss, merging, DPO step, BPE tokenizer, LM backend."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common import models
from common.tokenizers import bpe
from readerlm import backends
from readerlm import objectives
from readerlm import prompt
from tests import tolerances as tol


class ContrastiveTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_hand_computed(self):
    # Sequence 0: three tokens, h0 = h1 (s = 1), h2 orthogonal (s = 0).
    # Pairs (i != j): s01 = s10 = 1 -> 0.5 each; the 4 pairs with h2 -> 0.
    # L_0 = (0.5 + 0.5) / (3 * 2) = 1/6. Sequence 1: one token -> skipped.
    h = jnp.array(
      [
        [[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]],
        [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]],
      ]
    )
    mask = jnp.array([[1, 1, 1], [1, 0, 0]], bool)
    f = self.variant(objectives.contrastive_loss)
    np.testing.assert_allclose(f(h, mask, 0.5), 1 / 6, rtol=1e-6)
    # Opposite directions (s = -1) with margin 0.5: max(0, -1.5) = 0.
    opp = jnp.array([[[1.0, 0.0], [-1.0, 0.0]]])
    np.testing.assert_allclose(
      f(opp, jnp.ones((1, 2), bool), 0.5), 0.0, atol=1e-7
    )

  @chex.variants(with_jit=True, without_jit=True)
  def test_no_pairs_gives_zero(self):
    h = jnp.ones((2, 3, 4))
    f = self.variant(objectives.contrastive_loss)
    assert float(f(h, jnp.zeros((2, 3), bool))) == 0.0  # the constant 0

  @chex.variants(with_jit=True, without_jit=True)
  def test_linear_merge_hand_computed(self):
    a = {'w': jnp.array([1.0, 2.0]), 'b': jnp.array(0.0)}
    b = {'w': jnp.array([3.0, 6.0]), 'b': jnp.array(4.0)}
    merge = self.variant(
      lambda x, y: objectives.linear_merge([x, y], [0.25, 0.75])
    )
    m = merge(a, b)
    chex.assert_trees_all_equal_shapes_and_dtypes(m, a)
    np.testing.assert_allclose(m['w'], [2.5, 5.0], rtol=1e-6)
    np.testing.assert_allclose(m['b'], 3.0, rtol=1e-6)


def test_linear_merge_bad_weights():
  a = {'w': jnp.array([1.0, 2.0]), 'b': jnp.array(0.0)}
  b = {'w': jnp.array([3.0, 6.0]), 'b': jnp.array(4.0)}
  with pytest.raises(ValueError, match='sum to 1'):
    objectives.linear_merge([a, b], [0.5, 0.6])
  with pytest.raises(ValueError, match='weights'):
    objectives.linear_merge([a, b], [1.0])
  with pytest.raises(ValueError, match='structures'):
    objectives.linear_merge([a, {'w': a['w']}], [0.5, 0.5])


def _tiny(vocab, **kw):
  cfg = models.get_preset(
    'tiny', vocab_size=vocab, d_model=32, n_layers=1, d_ff=64, **kw
  )
  return models.Transformer(cfg, rngs=nnx.Rngs(0))


def test_sft_and_dpo_losses_train():
  model = _tiny(16)
  graphdef, params = models.split(model)
  tokens = jnp.array([[1, 2, 3, 4, 5, 0], [1, 2, 6, 7, 8, 9]])
  attn = jnp.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]], bool)
  loss_mask = jnp.array([[0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]], bool)
  batch = {'tokens': tokens, 'attention_mask': attn, 'loss_mask': loss_mask}
  f = jax.jit(objectives.make_sft_loss(graphdef, 1.0, 0.5))
  loss, aux = f(params, batch)
  np.testing.assert_allclose(loss, aux['ce'] + aux['contrastive'], rtol=1e-6)
  loss_fn, apply = objectives.make_dpo_loss(graphdef, beta=0.1)
  rej = dict(batch, tokens=jnp.array([[1, 2, 9, 9, 9, 0], [1, 2, 9, 9, 9, 9]]))
  rc, rr = objectives.reference_logps(apply, params, batch, rej)
  dbatch = {
    'chosen': batch,
    'rejected': rej,
    'ref_chosen': rc,
    'ref_rejected': rr,
  }
  loss_fn = jax.jit(loss_fn)
  loss, aux = loss_fn(params, dbatch)
  np.testing.assert_allclose(loss, np.log(2.0), rtol=1e-5)  # policy = ref
  grads = jax.jit(jax.grad(lambda p: loss_fn(p, dbatch)[0]))(params)
  p2 = jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)
  assert float(loss_fn(p2, dbatch)[0]) < float(loss)

  # Length-normalised DPO: each log-prob over its response length (the
  # loss masks hold 3 and 4 tokens), against zero reference log-probs.
  zero = jnp.zeros(2)
  nbatch = dict(dbatch, ref_chosen=zero, ref_rejected=zero)
  norm_fn, _ = objectives.make_dpo_loss(graphdef, 0.1, 'sigmoid_norm')
  got, _ = norm_fn(params, nbatch)
  pc, pr = objectives.reference_logps(apply, params, batch, rej)
  n = np.array([3.0, 4.0])
  h = pc / n - pr / n
  want = np.mean(-np.log(1 / (1 + np.exp(-0.1 * h))))
  tol.assert_close(got, want, tol.FEW_OPS)
  with pytest.raises(ValueError, match='loss_type'):
    objectives.make_dpo_loss(graphdef, 0.1, 'sigmoid_normed')


def test_qwen2_style_hf_directory_runs_on_a_page(tmp_path):
  """A Qwen2-architecture checkpoint (qkv bias) saved in HF format, loaded
  with common.models.hf and run on a cleaned page with the card's prompt."""
  tok = bpe.train_bpe(['<p>Hello world</p> # Title'] * 10, vocab_size=300)
  model = _tiny(tok.vocab_size, qkv_bias=True)
  models.save_hf(model, model.config, str(tmp_path))
  tok.save(tmp_path)
  cfg, loaded = models.load_hf(str(tmp_path))
  assert cfg.qkv_bias
  tok2 = bpe.BPETokenizer.load(tmp_path)
  lm = backends.LMBackend(
    loaded, tok2, max_prompt_len=96, max_new_tokens=8, batch_size=2
  )
  page = (
    '<html><script>x()</script><body><h1>Title</h1><p>Hello</p></body></html>'
  )
  msgs = [
    {
      'role': 'user',
      'content': prompt.instruction_prompt(prompt.clean_html(page)),
    }
  ]
  outs = lm.generate_batch([msgs, msgs, msgs])
  assert len(outs) == 3 and all(isinstance(o, str) for o in outs)
  assert outs[0] == outs[2]  # greedy: the same prompt gives the same text
  assert len(lm.last_finish) == 3
