"""PiCA's PPO: a critic (value model), token-level GAE and a jitted update.

The released run (research note §1.6) is verl PPO with GAE: per-token
rewards (PiCA step rewards on each `</search>` token, the outcome on the
last token, `pica.rewards.token_rewards`), optionally minus
`beta * (log pi_old - log pi_ref)` on policy tokens (KL-in-reward, k1,
`common.rl.apply_kl_penalty`), GAE with gamma = lam = 1 from a critic,
masked whitening of the advantages, the clipped surrogate with asymmetric
clipping 0.2 / 0.28 on model-generated tokens only, and a clipped value
loss (0.5) for the critic, which is a separate copy of the base model with
its own optimizer (actor lr << critic lr).

**Retrieved tokens.** They never enter the policy loss or the KL (the
`loss_mask`). For GAE two consistent choices are offered by
`PPOConfig.gae_mask`:

* `'response'` (default, as verl/Search-R1): the recursion and the
  whitening run over every response token, retrieved ones included; a
  retrieved token carries no reward (KL-in-reward is only on policy
  tokens) and its value is fitted by the critic like any other state.
* `'policy'`: the recursion, whitening and value loss run over policy
  tokens only; retrieved tokens are jumped over (`gae_advantages` uses the
  next policy token's value, one factor of gamma), so the environment's
  text is treated as part of the transition. Rewards must then sit on
  policy tokens: build them with `token_rewards(..., response_mask=
  loss_mask)` so the outcome lands on the last *generated* token.

With gamma = lam = 1 both give A_t = (sum of rewards from t on) - V_t on
policy tokens.

**Alignment.** Every per-token array is aligned with `tokens` as in
`common.rl.logprobs.next_token_logprobs`: entry t is about token t given
tokens < t. The value of token t is the critic's head on the hidden state
at t - 1 (the state in which token t is chosen), entry 0 is 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from common.rl import advantages as adv_lib
from common.rl import kl as kl_lib
from common.rl import losses
from common.rl import policy_loss
from pica import hazard

GAE_MASKS = ('response', 'policy')


class ValueModel(hazard.HazardModel):
  """Critic: a decoder LM backbone + bias-free scalar head (PiCA / verl).

  Same architecture as `hazard.HazardModel` (head N(0, 1 / (D + 1))).
  Build it with `from_policy`, which copies the policy's parameters: a
  plain `nnx.merge(graphdef, params)` reuses the state's Variables, so an
  in-place update of the critic would also change the policy.
  """

  @classmethod
  def from_policy(cls, graphdef, params, *, rngs: nnx.Rngs) -> ValueModel:
    """A critic whose backbone is a copy of the policy `(graphdef, params)`."""
    return cls(nnx.merge(graphdef, jax.tree.map(jnp.array, params)), rngs=rngs)

  def token_values(self, tokens, attention_mask=None) -> jax.Array:
    """`[B, T]` float32 values aligned with `tokens` (module docstring)."""
    v = self(tokens, attention_mask)
    return jnp.pad(v[:, :-1], ((0, 0), (1, 0)))


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  """PPO settings; defaults are PiCA's released run.

  Attributes:
    gamma: GAE discount (1.0).
    lam: GAE lambda (1.0).
    epsilon: lower policy clip range (0.2).
    epsilon_high: upper clip range (0.28).
    cliprange_value: value clip range (0.5); None = plain squared error.
    beta: KL coefficient (0.001).
    kl_in_reward: True (PiCA): `-beta * k1` on each policy token's reward;
      False: a k3 KL loss term with weight `beta` (GRPO style).
    entropy_coef: entropy bonus weight (PiCA 0.001).
    whiten_advantages: masked whitening of the GAE advantages.
    gae_mask: `'response'` or `'policy'` (module docstring).
    temperature: sampling temperature (logits are divided by it).
  """

  gamma: float = 1.0
  lam: float = 1.0
  epsilon: float = 0.2
  epsilon_high: float | None = 0.28
  cliprange_value: float | None = 0.5
  beta: float = 0.001
  kl_in_reward: bool = True
  entropy_coef: float = 0.0
  whiten_advantages: bool = True
  gae_mask: str = 'response'
  temperature: float = 1.0

  def __post_init__(self):
    if self.gae_mask not in GAE_MASKS:
      raise ValueError(
        f'PPOConfig.gae_mask must be one of {GAE_MASKS}, got {self.gae_mask!r}'
      )
    for name in ('gamma', 'lam'):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f'PPOConfig.{name} must lie in [0, 1]')
    if self.beta < 0:
      raise ValueError('PPOConfig.beta must be >= 0')

  def policy_loss_config(self) -> policy_loss.PolicyLossConfig:
    """The actor's `PolicyLossConfig` (KL term only without KL-in-reward)."""
    return policy_loss.PolicyLossConfig(
      epsilon=self.epsilon,
      epsilon_high=self.epsilon_high,
      beta=0.0 if self.kl_in_reward else self.beta,
      entropy_coef=self.entropy_coef,
      temperature=self.temperature,
    )


def compute_advantages(
  rewards, values, response_mask, loss_mask, config: PPOConfig, ref=None
) -> tuple[jax.Array, jax.Array, jax.Array, dict[str, jax.Array]]:
  """Rewards (+ KL penalty) -> GAE advantages and returns (pure, jit-able).

  Args:
    rewards: `[B, T]` token rewards (`token_rewards`, aligned with tokens).
    values: `[B, T]` critic values at sampling time (`token_values`).
    response_mask: `[B, T]` response tokens (retrieved ones included).
    loss_mask: `[B, T]` policy tokens (retrieved tokens and prompt 0).
    config: a `PPOConfig`.
    ref: `(old_logprobs, ref_logprobs)`, both `[B, T]`, for KL-in-reward
      (required when `config.kl_in_reward` and `beta > 0`).

  Returns:
    `(advantages, returns, gae_mask, metrics)`; advantages are whitened
    over `gae_mask` if configured, all `[B, T]` and 0 outside `gae_mask`.
  """
  response_mask = jnp.asarray(response_mask) != 0
  loss_mask = (jnp.asarray(loss_mask) != 0) & response_mask
  mask = response_mask if config.gae_mask == 'response' else loss_mask
  rewards = jnp.asarray(rewards, jnp.float32)
  metrics = {}
  if config.kl_in_reward and config.beta > 0:
    if ref is None:
      raise ValueError('kl_in_reward with beta > 0 needs ref log-probs')
    old_lp, ref_lp = ref
    penalised, m = kl_lib.apply_kl_penalty(
      rewards, old_lp, ref_lp, loss_mask, config.beta, estimator='k1'
    )
    rewards = jnp.where(loss_mask, penalised, rewards)
    metrics['kl_reward'] = m['kl']
  rewards = jnp.where(mask, rewards, 0.0)
  adv, returns = adv_lib.gae_advantages(
    rewards, values, mask, config.gamma, config.lam
  )
  metrics['return_mean'] = adv_lib.masked_mean(returns, mask)
  if config.whiten_advantages:
    adv = adv_lib.whiten(adv, mask)
  return adv, returns, mask, metrics


def make_ppo_update(
  policy_apply: Callable[[Any, jax.Array, jax.Array], jax.Array],
  critic_graphdef: nnx.GraphDef,
  config: PPOConfig,
  actor_tx: optax.GradientTransformation,
  critic_tx: optax.GradientTransformation,
):
  """Returns a pure jitted PPO update (one actor and one critic step).

  `update(actor_params, critic_params, actor_opt, critic_opt, batch) ->
  (actor_params, critic_params, actor_opt, critic_opt, metrics)` with batch
  keys `tokens`, `attention_mask`, `response_mask`, `loss_mask`,
  `rewards`, `old_logprobs`, `ref_logprobs`, `old_values` (all `[B, T]`,
  aligned with `tokens`; `old_values` from the critic before the update).

  Args:
    policy_apply: `(params, tokens, attention_mask) -> logits [B, T, V]`.
    critic_graphdef: graphdef of a `ValueModel`.
    config: a `PPOConfig`.
    actor_tx: actor optimizer (PiCA lr 7e-7 at 3B).
    critic_tx: critic optimizer (PiCA lr 7e-6: 10x the actor's).
  """
  actor_loss = policy_loss.make_policy_loss(
    policy_apply, config.policy_loss_config()
  )

  def critic_loss(params, batch, returns, mask):
    v = nnx.merge(critic_graphdef, params).token_values(
      batch['tokens'], batch['attention_mask']
    )
    return losses.clipped_value_loss(
      v, batch['old_values'], returns, mask, config.cliprange_value
    )

  @jax.jit
  def update(actor_params, critic_params, actor_opt, critic_opt, batch):
    adv, returns, mask, metrics = compute_advantages(
      batch['rewards'],
      batch['old_values'],
      batch['response_mask'],
      batch['loss_mask'],
      config,
      (batch['old_logprobs'], batch['ref_logprobs']),
    )
    adv = jax.lax.stop_gradient(adv)
    returns = jax.lax.stop_gradient(returns)
    pbatch = {
      'tokens': batch['tokens'],
      'attention_mask': batch['attention_mask'],
      'loss_mask': batch['loss_mask'],
      'advantages': adv,
      'old_logprobs': batch['old_logprobs'],
      'ref_logprobs': batch['ref_logprobs'],
    }
    (a_loss, a_m), a_grads = jax.value_and_grad(actor_loss, has_aux=True)(
      actor_params, pbatch
    )
    updates, actor_opt = actor_tx.update(a_grads, actor_opt, actor_params)
    actor_params = optax.apply_updates(actor_params, updates)
    (c_loss, c_m), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(
      critic_params, batch, returns, mask
    )
    updates, critic_opt = critic_tx.update(c_grads, critic_opt, critic_params)
    critic_params = optax.apply_updates(critic_params, updates)
    metrics = {
      **metrics,
      **a_m,
      **c_m,
      'actor_loss': a_loss,
      'value_loss': c_loss,
      'advantage_abs_mean': adv_lib.masked_mean(jnp.abs(adv), mask),
    }
    return actor_params, critic_params, actor_opt, critic_opt, metrics

  return update
