"""Tests for common/train/sft.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.tokenizers import WordTokenizer
from common.train import sft
from tests import tolerances as tol


@pytest.fixture(scope='module')
def tok():
  return WordTokenizer.build(
    ['what is the capital of x ? <answer> y </answer>']
  )


def test_encode_sft_masks_only_response(tok):
  batch = sft.encode_sft(tok, ['what is x ?'], ['<answer> y </answer>'], 10)
  p = len(tok.encode('what is x ?'))
  r = len(tok.encode('<answer> y </answer>')) + 1  # + eos
  np.testing.assert_array_equal(batch['attention_mask'][0, : p + r], True)
  np.testing.assert_array_equal(batch['attention_mask'][0, p + r :], False)
  np.testing.assert_array_equal(batch['loss_mask'][0, :p], False)
  np.testing.assert_array_equal(batch['loss_mask'][0, p : p + r], True)
  assert batch['tokens'][0, p + r - 1] == tok.eos_id


def test_encode_sft_errors(tok):
  with pytest.raises(ValueError, match='max_len'):
    sft.encode_sft(tok, ['what is x ?'], ['y'], 3)
  with pytest.raises(ValueError, match='2 prompts but 1'):
    sft.encode_sft(tok, ['a', 'b'], ['y'], 8)


def test_sft_loss_hand_case():
  # V=2, T=3. Logits at t=0 predict token 1 with p = e^1/(e^0+e^1).
  logits = jnp.array([[[0.0, 1.0], [2.0, 0.0], [0.0, 0.0]]])
  tokens = jnp.array([[0, 1, 0]])
  mask = jnp.array([[True, True, True]])  # entry 0 ignored
  loss, m = sft.sft_loss(logits, tokens, mask)
  lp1 = 1.0 - np.log(1 + np.e)  # log p(1 | logits[0])
  lp2 = 2.0 - np.log(1 + np.e**2)  # log p(0 | logits[1])
  # log_softmax of logits of size 2: a few float32 ops.
  tol.assert_close(loss, -(lp1 + lp2) / 2, tol.FEW_OPS)
  assert float(m['token_accuracy']) == 1.0  # 2 of 2 argmax hits: exact
  assert float(m['num_tokens']) == 2.0  # a count
  # Masking the last token leaves only the first prediction.
  loss2, _ = sft.sft_loss(logits, tokens, jnp.array([[1, 1, 0]]))
  tol.assert_close(loss2, -lp1, tol.FEW_OPS)


def test_make_sft_loss_ignores_padding():
  def apply_fn(params, tokens, attention_mask):
    del attention_mask
    return jax.nn.one_hot(tokens, 3) @ params

  params = jnp.arange(9.0).reshape(3, 3) / 10
  loss_fn = sft.make_sft_loss(apply_fn)
  base = {
    'tokens': jnp.array([[1, 2, 0]]),
    'attention_mask': jnp.array([[True, True, False]]),
    'loss_mask': jnp.array([[False, True, True]]),
  }
  loss, m = loss_fn(params, base)
  assert m['num_tokens'] == 1.0
  changed = dict(base, tokens=jnp.array([[1, 2, 1]]))
  # The changed token is padding (attention mask 0) and the toy logits at t
  # depend on token t only: its loss term is masked to zero, so the sum is
  # the same, bit for bit.
  np.testing.assert_array_equal(loss_fn(params, changed)[0], loss)
