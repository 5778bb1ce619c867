"""Tests for common.rl.policy_loss with a tiny linear 'language model'."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

from common import rl
from tests import tolerances as tol

VOCAB = 4


def apply_fn(params, tokens, attention_mask):
  """Logits at t depend only on token t: one_hot(tokens) @ W."""
  del attention_mask
  return jax.nn.one_hot(tokens, VOCAB) @ params


def _batch(**overrides):
  batch = {
    'tokens': jnp.array([[0, 1, 2, 3], [1, 2, 0, 0]]),
    'attention_mask': jnp.array([[1, 1, 1, 1], [1, 1, 1, 0]]),
    # Row 0 trains on tokens 1..3, row 1 on token 2 only (token 1 could be a
    # retrieved token excluded from the loss).
    'loss_mask': jnp.array([[0, 1, 1, 1], [0, 0, 1, 1]]),
    'advantages': jnp.array([2.0, -1.0]),
  }
  batch.update(overrides)
  return batch


PARAMS = jnp.zeros((VOCAB, VOCAB))  # uniform policy: logp = -log 4
LOGP = -math.log(VOCAB)
# Valid tokens: row 0 -> 3 tokens with A = 2, row 1 -> 1 token with A = -1
# (row 1 position 3 is padding even though loss_mask is 1 there).


def test_gradient_matches_reinforce_and_improves_policy():
  loss_fn = rl.make_policy_loss(apply_fn)
  params = jax.random.normal(jax.random.key(0), (VOCAB, VOCAB))
  batch = _batch()
  grad_fn = jax.jit(jax.grad(lambda p: loss_fn(p, batch)[0]))
  grad = grad_fn(params)

  def reinforce(p):
    logp = rl.next_token_logprobs(
      apply_fn(p, batch['tokens'], None), batch['tokens']
    )
    weights = jnp.array([[0, 2.0, 2.0, 2.0], [0, 0, -1.0, 0]])
    return -jnp.sum(weights * logp) / 4

  # Two float32 gradient programs through log_softmax over 4 logits.
  tol.assert_close(grad, jax.jit(jax.grad(reinforce))(params), tol.FEW_OPS)
  # Gradient descent raises the log-prob of row 0 (A > 0).
  step = jax.jit(lambda p: p - 0.5 * grad_fn(p))
  mask = batch['loss_mask'] * batch['attention_mask']

  @jax.jit
  def seq(p):
    tokens = batch['tokens']
    logp = rl.next_token_logprobs(apply_fn(p, tokens, None), tokens)
    return rl.sequence_logprob(logp, mask)

  before = seq(params)
  for _ in range(3):
    params = step(params)
  after = seq(params)
  assert after[0] > before[0] and after[1] < before[1]


def test_token_advantages_jit_and_padding_invariance():
  loss_fn = jax.jit(rl.make_policy_loss(apply_fn, {'beta': 0.1}))
  ref = jnp.full((2, 4), LOGP)
  adv_tokens = jnp.array([[9.0, 2.0, 2.0, 2.0], [9.0, 9.0, -1.0, 9.0]])
  a, _ = loss_fn(PARAMS, _batch(ref_logprobs=ref))
  b, _ = loss_fn(PARAMS, _batch(ref_logprobs=ref, advantages=adv_tokens))
  # Token advantages equal to the broadcast sequence advantages: the same
  # float32 values everywhere the mask is 1, so the same sums.
  tol.assert_close(a, b)
  # Padding / excluded positions may hold anything, including NaN.
  nan_old = jnp.full((2, 4), LOGP).at[1, 3].set(jnp.nan).at[0, 0].set(jnp.inf)
  nan_ref = ref.at[1, 3].set(jnp.nan).at[1, 1].set(-jnp.inf)
  tokens = _batch()['tokens'].at[1, 3].set(3)
  c, m = loss_fn(
    PARAMS,
    _batch(tokens=tokens, old_logprobs=nan_old, ref_logprobs=nan_ref),
  )
  tol.assert_close(c, a)
  assert all(np.isfinite(float(v)) for v in m.values())


def test_config_validation():
  with pytest.raises(ValueError, match="allowed values: 'token-mean'"):
    rl.PolicyLossConfig(loss_agg_mode='mean')
  with pytest.raises(ValueError, match="allowed values: 'k1', 'k2', 'k3'"):
    rl.PolicyLossConfig(kl_estimator='low_var_kl')
  with pytest.raises(ValueError, match="allowed values: 'token', 'sequ"):
    rl.PolicyLossConfig(importance_sampling_level='seq')
  with pytest.raises(ValueError, match='beta must be >= 0'):
    rl.PolicyLossConfig(beta=-0.1)
  with pytest.raises(ValueError, match=r'Unknown PolicyLossConfig field\(s\)'):
    rl.make_policy_loss(apply_fn, {'clip_eps': 0.2})


def test_batch_validation():
  loss_fn = rl.make_policy_loss(apply_fn, {'beta': 0.04})
  with pytest.raises(ValueError, match='needs batch\\["ref_logprobs"\\]'):
    loss_fn(PARAMS, _batch())
  plain = rl.make_policy_loss(apply_fn)
  batch = _batch()
  del batch['loss_mask']
  with pytest.raises(ValueError, match=r"missing required key\(s\) \['loss_m"):
    plain(PARAMS, batch)
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['old_logprob'\]"):
    plain(PARAMS, _batch(old_logprob=jnp.zeros((2, 4))))
  with pytest.raises(ValueError, match='advantages must have shape'):
    plain(PARAMS, _batch(advantages=jnp.zeros(3)))
  with pytest.raises(ValueError, match='apply_fn must return logits'):
    rl.make_policy_loss(lambda p, t, m: jnp.zeros((2, 4)))(PARAMS, _batch())


def test_grpo_step_on_nnx_model_with_optim():
  """End to end: NNX model split once, GRPO advantages, frozen embedding."""
  from flax import nnx

  from common import optim

  class TinyLM(nnx.Module):
    def __init__(self, rngs):
      self.embed = nnx.Embed(VOCAB, 8, rngs=rngs)
      self.out = nnx.Linear(8, VOCAB, rngs=rngs)

    def __call__(self, tokens):
      return self.out(self.embed(tokens))

  graphdef, params = nnx.split(TinyLM(nnx.Rngs(0)), nnx.Param)
  apply = lambda p, tokens, mask: nnx.merge(graphdef, p)(tokens)
  tokens = jnp.array([[0, 1, 1], [0, 2, 2], [0, 3, 1], [0, 2, 3]])
  rewards = jnp.array([1.0, 0.0, 0.0, 1.0])
  batch = {
    'tokens': tokens,
    'attention_mask': jnp.ones_like(tokens),
    'loss_mask': jnp.array([[0, 1, 1]] * 4),
    'advantages': rl.group_advantages(rewards, num_generations=2),
  }
  loss_fn = rl.make_policy_loss(apply, {'loss_agg_mode': 'seq-mean-token-mean'})
  tx = optim.with_frozen(
    optim.make_optimizer({'name': 'adamw', 'learning_rate': 0.05}),
    params,
    'embed/.*',
  )

  @jax.jit
  def step(p, opt_state):
    grads, metrics = jax.grad(loss_fn, has_aux=True)(p, batch)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, metrics

  @jax.jit
  def seq_logprob(p):
    logp = rl.next_token_logprobs(apply(p, tokens, None), tokens)
    return rl.sequence_logprob(logp, batch['loss_mask'])

  before = seq_logprob(params)
  opt_state = tx.init(params)
  new = params
  for _ in range(5):
    new, opt_state, metrics = step(new, opt_state)
  after = seq_logprob(new)
  # Rewarded completions (rows 0 and 3) gain log-prob, the others lose it.
  np.testing.assert_array_equal(np.sign(after - before), [1.0, -1.0, -1.0, 1.0])
  # The frozen embedding is bit-identical.
  chex.assert_trees_all_equal(new['embed'], params['embed'])
  chex.assert_tree_all_finite(metrics)


class PolicyLossVariantsTest(chex.TestCase):
  """Hand-computed cases under jit and without."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
    ('token-mean', -(3 * 2.0 - 1.0) / 4),
    ('seq-mean-token-mean', -(2.0 - 1.0) / 2),
    ('seq-mean-token-sum', -(6.0 - 1.0) / 2),
    ('dr_grpo', -(6.0 - 1.0) / (2 * 4)),
  )
  def test_on_policy_loss_is_minus_aggregated_advantage(self, mode, expected):
    loss_fn = self.variant(
      rl.make_policy_loss(apply_fn, {'loss_agg_mode': mode})
    )
    loss, metrics = loss_fn(PARAMS, _batch())
    chex.assert_shape(loss, ())
    # Uniform logits: log_softmax and exp of logp - logp, a few float32 ops.
    tol.assert_close(loss, expected, tol.FEW_OPS)
    tol.assert_close(metrics['ratio_mean'], 1.0, tol.FEW_OPS)
    assert float(metrics['clip_fraction']) == 0.0  # no token clipped: exact
    tol.assert_close(metrics['entropy'], math.log(VOCAB), tol.FEW_OPS)
    assert metrics['num_tokens'] == 4
    assert 'kl' not in metrics

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
    ('k1', 0.1), ('k2', 0.005), ('k3', math.expm1(-0.1) + 0.1)
  )
  def test_kl_term(self, estimator, kl):
    ref = jnp.full((2, 4), LOGP - 0.1)  # log ratio 0.1
    config = rl.PolicyLossConfig(beta=0.5, kl_estimator=estimator)
    loss, m = self.variant(rl.make_policy_loss(apply_fn, config))(
      PARAMS, _batch(ref_logprobs=ref)
    )
    # The log ratio is a difference of log-probs of size log 4 and k3 cancels
    # exp(-0.1) against 1: absolute errors of terms of size 1 (the default
    # scale), on KLs of size 0.005 to 0.1.
    tol.assert_close(m['kl'], kl, tol.FEW_OPS)
    tol.assert_close(loss, -1.25 + 0.5 * kl, tol.FEW_OPS)
    tol.assert_close(m['pg_loss'], -1.25, tol.FEW_OPS)

  @chex.variants(with_jit=True, without_jit=True)
  def test_old_logprobs_ratio_half(self):
    # old = logp + log 2 -> ratio 0.5 everywhere. A = 2: max(-1, -1.6) = -1;
    # A = -1: max(0.5, 0.8) = 0.8. Token mean: (3 * -1 + 0.8) / 4.
    old = jnp.full((2, 4), LOGP + math.log(2.0))
    loss_fn = self.variant(rl.make_policy_loss(apply_fn))
    loss, m = loss_fn(PARAMS, _batch(old_logprobs=old))
    tol.assert_close(loss, (-3.0 + 0.8) / 4, tol.FEW_OPS)
    assert float(m['clip_fraction']) == 0.25  # 1 of 4 tokens: exact

  @chex.variants(with_jit=True, without_jit=True)
  def test_entropy_bonus(self):
    config = rl.PolicyLossConfig(entropy_coef=0.1)
    loss, _ = self.variant(rl.make_policy_loss(apply_fn, config))(
      PARAMS, _batch()
    )
    tol.assert_close(loss, -1.25 - 0.1 * math.log(VOCAB), tol.FEW_OPS)
