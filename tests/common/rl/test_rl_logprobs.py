"""Tests for common.rl.logprobs against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import rl


def test_token_logprobs_hand_case():
  logits = jnp.log(jnp.array([[[1.0, 2.0, 1.0], [1.0, 1.0, 2.0]]]))
  targets = jnp.array([[1, 0]])
  out = rl.token_logprobs(logits, targets)
  np.testing.assert_allclose(out, [[math.log(0.5), math.log(0.25)]], rtol=1e-6)
  assert out.dtype == jnp.float32


def test_token_logprobs_stable_for_large_logits_and_bf16():
  logits = jnp.array([[[1000.0, 1000.0 + math.log(3.0)]]])
  out = rl.token_logprobs(logits, jnp.array([[1]]))
  # float32 spacing at 1000 is 6e-5, so the input itself is that coarse.
  np.testing.assert_allclose(out, [[math.log(0.75)]], atol=1e-4)
  out_bf16 = rl.token_logprobs(
    jnp.array([[[0.0, 0.0]]], jnp.bfloat16), jnp.array([[0]])
  )
  assert out_bf16.dtype == jnp.float32
  np.testing.assert_allclose(out_bf16, [[math.log(0.5)]], rtol=1e-6)


def test_token_logprobs_temperature():
  logits = jnp.array([[[0.0, 2 * math.log(2.0)]]])  # /2 -> probs 1/3, 2/3
  out = rl.token_logprobs(logits, jnp.array([[1]]), temperature=2.0)
  np.testing.assert_allclose(out, [[math.log(2 / 3)]], rtol=1e-6)


def test_token_logprobs_bad_input():
  with pytest.raises(ValueError, match='targets.shape'):
    rl.token_logprobs(jnp.zeros((2, 3, 4)), jnp.zeros((2, 4), jnp.int32))
  with pytest.raises(ValueError, match='integers'):
    rl.token_logprobs(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match='temperature'):
    rl.token_logprobs(
      jnp.zeros((2, 3, 4)), jnp.zeros((2, 3), jnp.int32), temperature=0.0
    )


def test_entropy_hand_case_and_masked_vocab():
  logits = jnp.log(jnp.array([[0.25, 0.5, 0.25], [1.0, 1.0, 0.0]]))
  out = rl.entropy(logits)  # second row has a -inf logit
  np.testing.assert_allclose(out, [1.5 * math.log(2), math.log(2)], rtol=1e-6)
  grad = jax.jit(jax.grad(lambda z: rl.entropy(z).sum()))(logits)
  assert np.all(np.isfinite(grad))


def test_next_token_logprobs_alignment():
  # Logits at position t put all mass on token (t + 1) % 3.
  vocab = 3
  tokens = jnp.array([[0, 1, 2]])
  logits = 30.0 * jax.nn.one_hot(jnp.array([[1, 2, 0]]), vocab)
  out = rl.next_token_logprobs(logits, tokens)
  assert out.shape == (1, 3)
  assert out[0, 0] == 0.0
  np.testing.assert_allclose(out[0, 1:], [0.0, 0.0], atol=1e-6)
  wrong = rl.next_token_logprobs(logits, jnp.array([[0, 0, 0]]))
  assert np.all(np.asarray(wrong[0, 1:]) < -25)
  ent = rl.next_token_entropy(jnp.zeros((1, 3, 4)))
  np.testing.assert_allclose(ent, [[0.0, math.log(4), math.log(4)]], rtol=1e-6)


def test_shift_for_next_token_shapes_and_errors():
  logits, targets = rl.shift_for_next_token(
    jnp.zeros((2, 5, 7)), jnp.zeros((2, 5), jnp.int32)
  )
  assert logits.shape == (2, 4, 7) and targets.shape == (2, 4)
  with pytest.raises(ValueError, match='disagree'):
    rl.shift_for_next_token(jnp.zeros((2, 5, 7)), jnp.zeros((2, 4), jnp.int32))


def test_sequence_logprob_ignores_padding():
  lp = jnp.array([[-1.0, -2.0, jnp.nan], [-jnp.inf, -0.5, -0.5]])
  mask = jnp.array([[1, 1, 0], [0, 1, 1]])
  np.testing.assert_allclose(rl.sequence_logprob(lp, mask), [-3.0, -1.0])
  np.testing.assert_allclose(
    rl.sequence_logprob(lp, mask, average=True), [-1.5, -0.5]
  )
  empty = rl.sequence_logprob(lp, jnp.zeros_like(mask), average=True)
  np.testing.assert_allclose(empty, [0.0, 0.0])


def test_logprobs_jit_and_vmap():
  key = jax.random.key(0)
  logits = jax.random.normal(key, (3, 2, 4, 5))
  tokens = jax.random.randint(key, (3, 2, 4), 0, 5)
  expected = jax.jit(rl.next_token_logprobs)(logits[1], tokens[1])
  batched = jax.jit(jax.vmap(rl.next_token_logprobs))(logits, tokens)
  np.testing.assert_allclose(batched[1], expected, rtol=1e-6)
  # Exact reference: log of the normalised softmax probability.
  probs = np.exp(np.asarray(logits[1], np.float64))
  probs /= probs.sum(-1, keepdims=True)
  ref = np.log(
    np.take_along_axis(probs[:, :-1], np.asarray(tokens[1])[:, 1:, None], -1)
  )[..., 0]
  np.testing.assert_allclose(expected[:, 1:], ref, rtol=1e-5)
