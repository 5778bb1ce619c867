"""PiCA PPO: hand-computed GAE cases, retrieved-token masking, an update."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from common import models
from common.rl import logprobs as lp_lib
from common.rl import policy_loss
from pica import ppo

NO_WHITEN = dict(whiten_advantages=False, kl_in_reward=False)


def test_config_validation():
  with pytest.raises(ValueError, match='gae_mask'):
    ppo.PPOConfig(gae_mask='all')
  with pytest.raises(ValueError, match='gamma'):
    ppo.PPOConfig(gamma=1.5)
  assert ppo.PPOConfig().policy_loss_config().beta == 0.0
  assert ppo.PPOConfig(kl_in_reward=False).policy_loss_config().beta == 0.001


def test_retrieved_tokens_get_zero_policy_gradient():
  # params are the logits themselves: grad at t-1 is token t's gradient
  key = jax.random.key(0)
  logits = jax.random.normal(key, (2, 6, 5))
  tokens = jax.random.randint(jax.random.key(1), (2, 6), 0, 5)
  loss_mask = jnp.array([[0, 1, 1, 0, 0, 1], [0, 1, 0, 1, 1, 1]])
  cfg = ppo.PPOConfig(kl_in_reward=False, beta=0.1, entropy_coef=0.01)
  fn = policy_loss.make_policy_loss(lambda p, t, m: p, cfg.policy_loss_config())
  logp = lp_lib.next_token_logprobs(logits, tokens)
  batch = {
    'tokens': tokens,
    'attention_mask': jnp.ones((2, 6)),
    'loss_mask': loss_mask,
    'advantages': jax.random.normal(jax.random.key(2), (2, 6)),
    'old_logprobs': logp - 0.1,
    'ref_logprobs': logp + 0.3,
  }
  g = jax.jit(jax.grad(lambda p: fn(p, batch)[0]))(logits)
  gnorm = jnp.abs(g).sum(-1)[:, :-1]  # row t-1 -> token t
  target = loss_mask[:, 1:] != 0
  assert bool(jnp.all(gnorm[~target] == 0.0))
  assert bool(jnp.all(gnorm[target] > 0.0))


def _tiny_setup():
  cfg = models.get_preset(
    'tiny',
    vocab_size=11,
    d_model=16,
    n_layers=1,
    n_heads=2,
    n_kv_heads=1,
    d_ff=32,
    max_seq_len=16,
  )
  policy = models.Transformer(cfg, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(policy)
  critic = ppo.ValueModel.from_policy(graphdef, params, rngs=nnx.Rngs(1))
  c_graph, c_params = nnx.split(critic)
  return graphdef, params, c_graph, c_params


def test_value_model_alignment_and_no_sharing():
  graphdef, params, c_graph, c_params = _tiny_setup()
  tokens = jnp.array([[1, 2, 3, 4, 5]])
  mask = jnp.ones((1, 5), bool)
  critic = nnx.merge(c_graph, c_params)
  v = critic.token_values(tokens, mask)
  full = critic(tokens, mask)
  assert v.shape == (1, 5) and float(v[0, 0]) == 0.0
  np.testing.assert_allclose(v[0, 1:], full[0, :-1], rtol=1e-6)
  # changing the critic's backbone leaves the policy's params untouched
  before = jax.tree.leaves(params)[0].copy()
  nnx.update(critic, jax.tree.map(lambda x: x + 1.0, c_params))
  np.testing.assert_array_equal(jax.tree.leaves(params)[0], before)


def test_ppo_update_improves_both_objectives():
  graphdef, params, c_graph, c_params = _tiny_setup()
  apply = models.apply_fn(graphdef)
  cfg = ppo.PPOConfig(beta=0.01)
  tokens = jax.random.randint(jax.random.key(3), (4, 10), 1, 11)
  attn = jnp.ones((4, 10), bool)
  resp = jnp.zeros((4, 10), bool).at[:, 4:].set(True)
  loss_mask = resp.at[:, 6:8].set(False)  # a retrieved span
  rewards = jnp.zeros((4, 10)).at[:, 9].set(jnp.array([1.0, -1.0, 0.5, 0.0]))
  rewards = rewards.at[:, 5].set(0.3)  # a step reward on `</search>`
  logp = jax.jit(
    lambda p: lp_lib.next_token_logprobs(apply(p, tokens, attn), tokens)
  )
  vals = jax.jit(lambda p: nnx.merge(c_graph, p).token_values(tokens, attn))
  batch = {
    'tokens': tokens,
    'attention_mask': attn,
    'response_mask': resp,
    'loss_mask': loss_mask,
    'rewards': rewards,
    'old_logprobs': logp(params),
    'ref_logprobs': logp(params),
    'old_values': vals(c_params),
  }
  actor_tx, critic_tx = optax.adam(1e-3), optax.adam(1e-2)
  update = ppo.make_ppo_update(apply, c_graph, cfg, actor_tx, critic_tx)
  a_opt, c_opt = actor_tx.init(params), critic_tx.init(c_params)
  p, cp = params, c_params
  first = None
  for _ in range(5):
    p, cp, a_opt, c_opt, m = update(p, cp, a_opt, c_opt, batch)
    first = first or {k: float(v) for k, v in m.items()}
  assert np.isfinite(first['actor_loss']) and np.isfinite(first['value_loss'])
  np.testing.assert_allclose(first['ratio_mean'], 1.0, rtol=1e-5)
  assert float(m['actor_loss']) < first['actor_loss']
  assert float(m['value_loss']) < first['value_loss']
  assert float(m['clip_fraction']) >= 0.0


class AdvantagesVariantsTest(chex.TestCase):
  """compute_advantages under jit and without."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_value_zero_advantage_is_sum_of_future_rewards(self):
    r = jnp.array([[0.0, 1.0, 0.0, 2.0], [0.5, 0.0, 0.0, 0.0]])
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    cfg = ppo.PPOConfig(**NO_WHITEN)
    fn = self.variant(lambda *a: ppo.compute_advantages(*a, cfg))
    adv, ret, m, _ = fn(r, jnp.zeros_like(r), mask, mask)
    chex.assert_equal_shape([adv, ret, r])
    np.testing.assert_allclose(adv, [[3, 3, 2, 2], [0.5, 0, 0, 0]])
    np.testing.assert_allclose(ret, adv)
    assert m.tolist() == (mask != 0).tolist()

  @chex.variants(with_jit=True, without_jit=True)
  def test_values_and_retrieved_tokens_both_gae_masks(self):
    # tokens: policy, policy(</search>, step 0.4), retrieved, policy(1.0 out)
    r = jnp.array([[0.0, 0.4, 0.0, 1.0]])
    v = jnp.array([[0.5, 0.2, 9.0, 0.3]])
    resp = jnp.array([[1, 1, 1, 1]])
    loss = jnp.array([[1, 1, 0, 1]])
    cfg = ppo.PPOConfig(gae_mask='policy', **NO_WHITEN)
    adv, ret, _, _ = self.variant(lambda *a: ppo.compute_advantages(*a, cfg))(
      r, v, resp, loss
    )
    # gamma = lam = 1: A_t = sum_{s>=t} r_s - V_t; retrieved entry 0
    np.testing.assert_allclose(adv, [[0.9, 1.2, 0.0, 0.7]], rtol=1e-6)
    np.testing.assert_allclose(ret, [[1.4, 1.4, 0.0, 1.0]], rtol=1e-6)
    cfg = ppo.PPOConfig(gae_mask='response', **NO_WHITEN)
    adv, _, _, _ = self.variant(lambda *a: ppo.compute_advantages(*a, cfg))(
      r, v, resp, loss
    )
    # the retrieved state gets its own advantage 1.0 - 9.0
    np.testing.assert_allclose(adv, [[0.9, 1.2, -8.0, 0.7]], rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_kl_in_reward_only_on_policy_tokens_and_whitening(self):
    r = jnp.array([[0.0, 0.0, 0.0, 1.0]])
    resp = jnp.ones((1, 4))
    loss = jnp.array([[1, 1, 0, 1]])
    old = jnp.array([[-1.0, -1.0, -1.0, -1.0]])
    ref = old - 0.2  # k1 = 0.2 per token
    cfg = ppo.PPOConfig(beta=0.5, whiten_advantages=False)
    adv, _, _, m = self.variant(
      lambda r, v, resp, loss, kl: ppo.compute_advantages(
        r, v, resp, loss, cfg, kl
      )
    )(r, jnp.zeros((1, 4)), resp, loss, (old, ref))
    # rewards -0.1, -0.1, 0 (retrieved: no KL), 0.9
    np.testing.assert_allclose(adv, [[0.7, 0.8, 0.9, 0.9]], rtol=1e-5)
    np.testing.assert_allclose(m['kl_reward'], 0.2, rtol=1e-5)
    r2 = jnp.concatenate([r, -r])
    w, _, _, _ = ppo.compute_advantages(
      r2,
      jnp.zeros((2, 4)),
      jnp.ones((2, 4)),
      jnp.ones((2, 4)),
      ppo.PPOConfig(kl_in_reward=False),
    )
    np.testing.assert_allclose(jnp.mean(w), 0.0, atol=1e-6)
    np.testing.assert_allclose(jnp.std(w, ddof=1), 1.0, rtol=1e-4)
