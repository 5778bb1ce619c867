"""Mixed policy optimisation: the clipped surrogate plus the prefix ratio.

Tokens the policy sampled (self rollouts, branch suffixes) enter the PPO
clipped surrogate `common.rl.losses.ppo_policy_loss` with their sampling
log-probs. Tokens copied from the expert trajectory (the expert sample and
branch prefixes) were not sampled by the policy, so their importance
weight is the off-policy prefix ratio, a biased correction (not full
importance sampling) [paper: "not an unbiased full IS correction"]; its
form is [recon], selectable:

* `'old'`:    `rho_t = pi_theta(t) / sg(pi_old(t))`, unclipped, `pi_old`
  the policy that teacher-forced the expert (at one update per rollout it
  is 1 in value, and its gradient is `grad log pi_theta`: SFT-like on
  positive advantages);
* `'shaped'`: LUFFY's policy shaping with `pi_expert = 1`:
  `rho_t = f(pi_theta(t)) = pi_theta(t) / (pi_theta(t) + gamma)`, which
  raises the weight of low-probability expert tokens.

Per-token loss `-A_t * rho_t` on prefix tokens; both parts are aggregated
token-mean over all trained tokens (`common.rl.losses.aggregate_loss`), no
KL [recon, matching the Tool-Star stack], optional entropy bonus (Tool-Star:
0.001).

Batch keys of `make_mixed_loss`: `tokens`, `attention_mask`, `loss_mask`
(after AAGD and the observation mask), `prefix_mask` (expert tokens),
`advantages` (`[B]` or `[B, T]`), `old_logprobs` (`[B, T]`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from common.rl import advantages as advantages_lib
from common.rl import logprobs as logprobs_lib
from common.rl import losses

PREFIX_RATIOS = ('old', 'shaped')
BATCH_KEYS = (
  'tokens',
  'attention_mask',
  'loss_mask',
  'prefix_mask',
  'advantages',
  'old_logprobs',
)


@dataclasses.dataclass(frozen=True)
class MixedLossConfig:
  """Hyperparameters of the mixed objective.

  Attributes:
    epsilon: PPO clip range (Tool-Star: 0.2).
    epsilon_high: upper clip (None: `epsilon`).
    prefix_ratio: one of `PREFIX_RATIOS`.
    gamma: the shaping constant of `'shaped'` (LUFFY: 0.1).
    entropy_coef: entropy bonus weight (Tool-Star: 0.001).
  """

  epsilon: float = 0.2
  epsilon_high: float | None = None
  prefix_ratio: str = 'old'
  gamma: float = 0.1
  entropy_coef: float = 0.0

  def __post_init__(self):
    if self.prefix_ratio not in PREFIX_RATIOS:
      raise ValueError(
        f'MixedLossConfig.prefix_ratio={self.prefix_ratio!r}; allowed: '
        f'{PREFIX_RATIOS}'
      )
    if not self.gamma > 0:
      raise ValueError(f'MixedLossConfig.gamma must be > 0, got {self.gamma}')
    if self.entropy_coef < 0:
      raise ValueError('MixedLossConfig.entropy_coef must be >= 0')


def prefix_ratio(
  logprobs: jax.Array,
  old_logprobs: jax.Array,
  mode: str = 'old',
  gamma: float = 0.1,
) -> jax.Array:
  """`[B, T]` off-policy prefix ratio (module docstring).

  Args:
    logprobs: `[B, T]` current-policy log-probs of the expert tokens.
    old_logprobs: `[B, T]` log-probs of the policy that forced them.
    mode: one of `PREFIX_RATIOS`.
    gamma: shaping constant of `'shaped'`.
  """
  if mode == 'old':
    return jnp.exp(logprobs - jax.lax.stop_gradient(old_logprobs))
  if mode == 'shaped':
    p = jnp.exp(logprobs)
    return p / (p + gamma)
  raise ValueError(f'prefix ratio {mode!r}; allowed: {PREFIX_RATIOS}')


def mixed_policy_loss(
  logprobs: jax.Array,
  old_logprobs: jax.Array,
  advantages: jax.Array,
  loss_mask: jax.Array,
  prefix_mask: jax.Array,
  config: MixedLossConfig = MixedLossConfig(),
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Token-mean of the clipped surrogate (on-policy) and `-A * rho` (prefix).

  Args:
    logprobs: `[B, T]` current log-probs (differentiated).
    old_logprobs: `[B, T]` sampling (or forcing) log-probs.
    advantages: `[B, T]` per-token advantages.
    loss_mask: `[B, T]` tokens trained on (AAGD applied).
    prefix_mask: `[B, T]` expert tokens (off-policy).
    config: a `MixedLossConfig`.

  Returns:
    `(loss, metrics)`; metrics: `on_policy_tokens`, `prefix_tokens`,
    `prefix_ratio_mean`, and the surrogate's `clip_fraction`.
  """
  train = loss_mask.astype(bool)
  prefix = prefix_mask.astype(bool)
  on = train & ~prefix
  off = train & prefix
  n_on = jnp.sum(on).astype(jnp.float32)
  n_off = jnp.sum(off).astype(jnp.float32)
  l_on, m = losses.ppo_policy_loss(
    logprobs,
    old_logprobs,
    advantages,
    on,
    epsilon=config.epsilon,
    epsilon_high=config.epsilon_high,
  )
  rho = prefix_ratio(logprobs, old_logprobs, config.prefix_ratio, config.gamma)
  adv = jnp.where(off, advantages.astype(jnp.float32), 0.0)
  l_off = losses.aggregate_loss(-adv * rho, off, 'token-mean')
  total = (n_on * l_on + n_off * l_off) / jnp.maximum(n_on + n_off, 1.0)
  metrics = {
    'on_policy_tokens': n_on,
    'prefix_tokens': n_off,
    'prefix_ratio_mean': advantages_lib.masked_mean(rho, off),
    'clip_fraction': m['clip_fraction'],
  }
  return total, jax.tree.map(jax.lax.stop_gradient, metrics)


def make_mixed_loss(
  apply_fn: Callable[[Any, jax.Array, jax.Array], jax.Array],
  config: MixedLossConfig = MixedLossConfig(),
):
  """`loss_fn(params, batch) -> (loss, metrics)` over a mixed batch.

  Args:
    apply_fn: `(params, tokens [B, T], mask [B, T]) -> logits [B, T, V]`.
    config: a `MixedLossConfig`.
  """

  def loss_fn(params, batch):
    missing = [k for k in BATCH_KEYS if k not in batch]
    if missing:
      raise ValueError(f'mixed batch is missing {missing}; needs {BATCH_KEYS}')
    tokens = batch['tokens']
    att = batch['attention_mask']
    logits = apply_fn(params, tokens, att)
    logp = logprobs_lib.next_token_logprobs(logits, tokens)
    mask = (batch['loss_mask'] != 0) & (att != 0)
    mask = mask.at[:, 0].set(False)
    adv = batch['advantages']
    if adv.ndim == 1:
      adv = advantages_lib.broadcast_to_tokens(adv, mask)
    loss, metrics = mixed_policy_loss(
      logp, batch['old_logprobs'], adv, mask, batch['prefix_mask'], config
    )
    ent = logprobs_lib.next_token_entropy(logits)
    if config.entropy_coef > 0:
      loss = loss - config.entropy_coef * losses.aggregate_loss(ent, mask)
    metrics['entropy'] = jax.lax.stop_gradient(
      advantages_lib.masked_mean(ent, mask)
    )
    metrics['pg_loss'] = jax.lax.stop_gradient(loss)
    return loss, metrics

  return loss_fn
