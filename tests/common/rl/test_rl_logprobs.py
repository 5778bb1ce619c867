"""Tests for common.rl.logprobs against hand-computed values."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import rl
from tests import tolerances as tol


def test_token_logprobs_stable_for_large_logits_and_bf16():
  logits = jnp.array([[[1000.0, 1000.0 + math.log(3.0)]]])
  out = rl.token_logprobs(logits, jnp.array([[1]]))
  # The error is relative to the logits (1000): float32 spacing there is
  # 6e-5, so the input log(3) offset is itself that coarse. Two ulps.
  ulp = float(np.spacing(np.float32(1000.0)))
  np.testing.assert_allclose(out, [[math.log(0.75)]], rtol=0, atol=2 * ulp)
  out_bf16 = rl.token_logprobs(
    jnp.array([[[0.0, 0.0]]], jnp.bfloat16), jnp.array([[0]])
  )
  assert out_bf16.dtype == jnp.float32
  tol.assert_close(out_bf16, [[math.log(0.5)]], tol.FEW_OPS)


def test_token_logprobs_bad_input():
  with pytest.raises(ValueError, match='targets.shape'):
    rl.token_logprobs(jnp.zeros((2, 3, 4)), jnp.zeros((2, 4), jnp.int32))
  with pytest.raises(ValueError, match='integers'):
    rl.token_logprobs(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match='temperature'):
    rl.token_logprobs(
      jnp.zeros((2, 3, 4)), jnp.zeros((2, 3), jnp.int32), temperature=0.0
    )


def test_logprobs_jit_and_vmap():
  key = jax.random.key(0)
  logits = jax.random.normal(key, (3, 2, 4, 5))
  tokens = jax.random.randint(key, (3, 2, 4), 0, 5)
  expected = jax.jit(rl.next_token_logprobs)(logits[1], tokens[1])
  batched = jax.jit(jax.vmap(rl.next_token_logprobs))(logits, tokens)
  # Same log_softmax over 5 logits, batched: rounding of values of size 3.
  tol.assert_close(batched[1], expected, tol.FEW_OPS)
  # Exact reference: log of the normalised softmax probability.
  probs = np.exp(np.asarray(logits[1], np.float64))
  probs /= probs.sum(-1, keepdims=True)
  ref = np.log(
    np.take_along_axis(probs[:, :-1], np.asarray(tokens[1])[:, 1:, None], -1)
  )[..., 0]
  tol.assert_close(expected[:, 1:], ref, tol.FEW_OPS)


class LogprobsVariantsTest(chex.TestCase):
  """Hand-computed cases under jit and without (and pmap where vmapped)."""

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_token_logprobs_hand_case(self):
    logits = jnp.log(jnp.array([[[1.0, 2.0, 1.0], [1.0, 1.0, 2.0]]]))
    targets = jnp.array([[1, 0]])
    out = self.variant(rl.token_logprobs)(logits, targets)
    chex.assert_equal_shape([out, targets])
    # log of float32 inputs, then log_softmax: a few ops on values of size 1.
    tol.assert_close(out, [[math.log(0.5), math.log(0.25)]], tol.FEW_OPS)
    assert out.dtype == jnp.float32

  @chex.variants(with_jit=True, without_jit=True)
  def test_token_logprobs_temperature(self):
    logits = jnp.array([[[0.0, 2 * math.log(2.0)]]])  # /2 -> probs 1/3, 2/3
    fn = self.variant(lambda z, y: rl.token_logprobs(z, y, temperature=2.0))
    out = fn(logits, jnp.array([[1]]))
    tol.assert_close(out, [[math.log(2 / 3)]], tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_entropy_hand_case_and_masked_vocab(self):
    logits = jnp.log(jnp.array([[0.25, 0.5, 0.25], [1.0, 1.0, 0.0]]))
    out = self.variant(rl.entropy)(logits)  # second row has a -inf logit
    tol.assert_close(out, [1.5 * math.log(2), math.log(2)], tol.FEW_OPS)
    grad = self.variant(jax.grad(lambda z: rl.entropy(z).sum()))(logits)
    chex.assert_tree_all_finite(grad)

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_next_token_logprobs_alignment(self):
    # Logits at position t put all mass on token (t + 1) % 3.
    vocab = 3
    tokens = jnp.array([[0, 1, 2]])
    logits = 30.0 * jax.nn.one_hot(jnp.array([[1, 2, 0]]), vocab)
    next_lp = self.variant(rl.next_token_logprobs)
    out = next_lp(logits, tokens)
    chex.assert_shape(out, (1, 3))
    assert out[0, 0] == 0.0  # no previous position: the constant 0
    # log(1 - 2 exp(-30)) = -2e-13; the floor is rounding of logits of 30.
    tol.assert_close(out[0, 1:], [0.0, 0.0], tol.ROUNDING, scale=30.0)
    wrong = next_lp(logits, jnp.array([[0, 0, 0]]))
    assert np.all(np.asarray(wrong[0, 1:]) < -25)
    ent = self.variant(rl.next_token_entropy)(jnp.zeros((1, 3, 4)))
    tol.assert_close(ent, [[0.0, math.log(4), math.log(4)]], tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_shift_for_next_token_shapes_and_errors(self):
    shift = self.variant(rl.shift_for_next_token)
    logits, targets = shift(jnp.zeros((2, 5, 7)), jnp.zeros((2, 5), jnp.int32))
    chex.assert_shape(logits, (2, 4, 7))
    chex.assert_shape(targets, (2, 4))
    with pytest.raises(ValueError, match='disagree'):
      shift(jnp.zeros((2, 5, 7)), jnp.zeros((2, 4), jnp.int32))

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_sequence_logprob_ignores_padding(self):
    lp = jnp.array([[-1.0, -2.0, jnp.nan], [-jnp.inf, -0.5, -0.5]])
    mask = jnp.array([[1, 1, 0], [0, 1, 1]])
    # Masked sums of dyadic values: exact in float32.
    seq = self.variant(rl.sequence_logprob, static_argnums=2)
    np.testing.assert_array_equal(seq(lp, mask, False), [-3.0, -1.0])
    np.testing.assert_array_equal(seq(lp, mask, True), [-1.5, -0.5])
    empty = seq(lp, jnp.zeros_like(mask), True)
    np.testing.assert_array_equal(empty, [0.0, 0.0])  # no token: constant 0
