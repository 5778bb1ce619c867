"""Tests for common.rl.preference: DPO/IPO/hinge/SPIN losses and helpers."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common import models
from common import rl
from tests import tolerances as tol


def softplus(z):
  return math.log1p(math.exp(z))


# Row 0: h = (-1 - -2) - (-3 - -2) = 2; row 1: h = -2.
PW = jnp.array([-1.0, -3.0])
PL = jnp.array([-3.0, -1.0])
RW = jnp.array([-2.0, -2.0])
RL = jnp.array([-2.0, -2.0])


class PreferenceLossTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_sigmoid_hand_case(self):
    # beta = 0.5: beta h = +-1, loss = softplus(-beta h).
    fn = self.variant(lambda *a: rl.dpo_loss(*a, beta=0.5))
    want = [softplus(-1.0), softplus(1.0)]
    tol.assert_close(fn(PW, PL, RW, RL), want, tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_label_smoothing_hand_case(self):
    # (1 - eps) softplus(-z) + eps softplus(z) = softplus(-z) + eps z.
    fn = self.variant(lambda *a: rl.dpo_loss(*a, beta=0.5, label_smoothing=0.1))
    want = [softplus(-1.0) + 0.1, softplus(1.0) - 0.1]
    tol.assert_close(fn(PW, PL, RW, RL), want, tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_ipo_hand_case(self):
    # (h - 1 / (2 beta))^2 with beta = 0.5: (2 - 1)^2, (-2 - 1)^2.
    fn = self.variant(lambda *a: rl.dpo_loss(*a, beta=0.5, loss_type='ipo'))
    tol.assert_close(fn(PW, PL, RW, RL), [1.0, 9.0])

  @chex.variants(with_jit=True, without_jit=True)
  def test_hinge_hand_case(self):
    # relu(1 - beta h) with beta = 0.25: relu(0.5), relu(1.5).
    fn = self.variant(lambda *a: rl.dpo_loss(*a, beta=0.25, loss_type='hinge'))
    tol.assert_close(fn(PW, PL, RW, RL), [0.5, 1.5])

  @chex.variants(with_jit=True, without_jit=True)
  def test_length_normalised_hand_case(self):
    # Row: pw -4/2 = -2, rw -6/2 = -3, pl -3/1, rl -3/1: h = 1, beta = 1.
    def loss(pw, pl, rw, rl_, nw, nl):
      return rl.dpo_loss(
        pw, pl, rw, rl_, beta=1.0, loss_type='sigmoid_norm',
        chosen_lengths=nw, rejected_lengths=nl,
      )  # fmt: skip

    fn = self.variant(loss)
    got = fn(
      jnp.array([-4.0]), jnp.array([-3.0]), jnp.array([-6.0]),
      jnp.array([-3.0]), jnp.array([2]), jnp.array([1]),
    )  # fmt: skip
    tol.assert_close(got, [softplus(-1.0)], tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_traced_beta_matches_static(self):
    fn = self.variant(lambda beta: rl.dpo_loss(PW, PL, RW, RL, beta=beta))
    # The same float32 program with beta as a value or a constant.
    tol.assert_close(fn(jnp.float32(0.5)), rl.dpo_loss(PW, PL, RW, RL, 0.5))

  @chex.variants(with_jit=True, without_jit=True)
  def test_spin_is_dpo_with_previous_iterate(self):
    fn = self.variant(lambda *a: rl.spin_loss(*a, beta=0.5))
    np.testing.assert_array_equal(  # the same computation
      fn(PW, PL, RW, RL), rl.dpo_loss(PW, PL, RW, RL, beta=0.5)
    )

  @chex.variants(with_jit=True, without_jit=True)
  def test_metrics_hand_case(self):
    fn = self.variant(lambda *a: rl.preference_metrics(*a, beta=0.5))
    m = fn(PW, PL, RW, RL)
    # chosen rewards 0.5 * [1, -1], rejected 0.5 * [-1, 1].
    tol.assert_close(m['rewards/chosen'], 0.0)
    tol.assert_close(m['rewards/rejected'], 0.0)
    tol.assert_close(m['rewards/accuracies'], 0.5)
    tol.assert_close(m['rewards/margins'], 0.0)
    m = fn(PW[:1], PL[:1], RW[:1], RL[:1])
    tol.assert_close(m['rewards/chosen'], 0.5)
    tol.assert_close(m['rewards/margins'], 1.0)
    tol.assert_close(m['rewards/accuracies'], 1.0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_implicit_rewards(self):
    fn = self.variant(lambda a, b: rl.implicit_rewards(a, b, 0.1))
    tol.assert_close(fn(PW, RW), [0.1, -0.1])


def test_sigmoid_gradient_is_minus_beta_sigmoid():
  # d/dpw softplus(-beta h) = -beta sigmoid(-beta h); beta h = 1.
  g = jax.grad(lambda pw: rl.dpo_loss(pw, PL[:1], RW[:1], RL[:1], 0.5)[0])(
    PW[:1]
  )
  tol.assert_close(g, [-0.5 / (1 + math.e)], tol.FEW_OPS)


def test_vmap_over_pairs():
  fn = jax.vmap(lambda a, b, c, d: rl.dpo_loss(a, b, c, d, 0.5))
  got = fn(PW[:, None], PL[:, None], RW[:, None], RL[:, None])
  tol.assert_close(got[:, 0], rl.dpo_loss(PW, PL, RW, RL, 0.5))


def test_bad_input():
  with pytest.raises(ValueError, match='beta must be'):
    rl.dpo_loss(PW, PL, RW, RL, beta=0.0)
  with pytest.raises(
    ValueError, match=r'label_smoothing must be in \[0, 0.5\]'
  ):
    rl.dpo_loss(PW, PL, RW, RL, label_smoothing=0.7)
  with pytest.raises(ValueError, match='defined only for loss_type'):
    rl.dpo_loss(PW, PL, RW, RL, label_smoothing=0.1, loss_type='ipo')
  with pytest.raises(ValueError, match="'sigmoid', 'ipo'"):
    rl.dpo_loss(PW, PL, RW, RL, loss_type='robust')
  with pytest.raises(ValueError, match='needs chosen_lengths'):
    rl.dpo_loss(PW, PL, RW, RL, loss_type='sigmoid_norm')
  with pytest.raises(ValueError, match='Shape mismatch'):
    rl.dpo_loss(PW, PL[:1], RW, RL)
  with pytest.raises(ValueError, match=r'\[B\]'):
    rl.dpo_loss(PW[None], PL[None], RW[None], RL[None])


def _model():
  cfg = models.get_preset(
    'tiny', vocab_size=20, d_model=16, n_layers=1, d_ff=32, n_heads=2,
    n_kv_heads=1, max_seq_len=16,
  )  # fmt: skip
  return models.split(models.Transformer(cfg, rngs=nnx.Rngs(0)))


def _pairs():
  # chosen: prompt [3, 4], completion [5, 6, 7]; rejected: completion [8].
  chosen = {
    'tokens': jnp.array([[3, 4, 5, 6, 7, 0], [3, 9, 5, 0, 0, 0]]),
    'attention_mask': jnp.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]]),
    'loss_mask': jnp.array([[0, 0, 1, 1, 1, 0], [0, 0, 1, 0, 0, 0]]),
  }
  rejected = {
    'tokens': jnp.array([[3, 4, 8, 0], [3, 9, 8, 8]]),
    'attention_mask': jnp.array([[1, 1, 1, 0], [1, 1, 1, 1]]),
    'loss_mask': jnp.array([[0, 0, 1, 0], [0, 0, 1, 1]]),
  }
  return chosen, rejected


def test_concatenated_logprobs_match_separate_forwards():
  graphdef, params = _model()
  apply = models.apply_fn(graphdef)
  chosen, rejected = _pairs()
  pair = jax.jit(
    lambda p, c, r, average=False: rl.concatenated_sequence_logprobs(
      apply, p, c, r, average=average
    ),
    static_argnames='average',
  )
  out = pair(params, chosen, rejected)
  np.testing.assert_array_equal(out.chosen_lengths, [3, 1])  # integers
  np.testing.assert_array_equal(out.rejected_lengths, [1, 2])
  for batch, got in (
    (chosen, out.chosen_logps),
    (rejected, out.rejected_logps),
  ):
    lp = jax.jit(models.token_logprobs, static_argnums=0)(
      graphdef, params, batch
    )
    want = rl.sequence_logprob(lp, batch['loss_mask'])
    # Same model, different batch composition and padding: matmul order.
    tol.assert_close(got, want, tol.REDUCTION)
  avg = pair(params, chosen, rejected, average=True)
  tol.assert_close(avg.chosen_logps, out.chosen_logps / jnp.array([3, 1]))


def test_concatenated_logprobs_hand_case_and_jit():
  # A bigram table whose rows are uniform over V = 4: every completion token
  # costs log(1/4), the prompt costs nothing.
  def apply(params, tokens, mask):
    del mask
    return params[tokens]

  params = jnp.zeros((20, 4))
  chosen, rejected = _pairs()
  chosen['tokens'] = chosen['tokens'] % 4
  rejected['tokens'] = rejected['tokens'] % 4
  fn = jax.jit(
    lambda p, c, r: rl.concatenated_sequence_logprobs(apply, p, c, r)
  )
  out = fn(params, chosen, rejected)
  tol.assert_close(out.chosen_logps, [3 * math.log(0.25), math.log(0.25)])
  tol.assert_close(out.rejected_logps, [math.log(0.25), 2 * math.log(0.25)])


def test_concatenated_logprobs_bad_batches():
  graphdef, params = _model()
  apply = models.apply_fn(graphdef)
  chosen, rejected = _pairs()
  with pytest.raises(ValueError, match="lacks \\['loss_mask'\\]"):
    rl.concatenated_sequence_logprobs(
      apply, params, {k: chosen[k] for k in ('tokens', 'attention_mask')},
      rejected,
    )  # fmt: skip
  with pytest.raises(ValueError, match='same B'):
    rl.concatenated_sequence_logprobs(
      apply, params, chosen, {k: v[:1] for k, v in rejected.items()}
    )
