"""Model-agnostic GRPO/PPO policy objective: `make_policy_loss`.

    loss_fn = make_policy_loss(apply_fn, PolicyLossConfig(beta=0.04))
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch)

`apply_fn(params, tokens [B, T], attention_mask [B, T]) -> logits [B, T, V]`
is any causal LM (e.g. a merged Flax NNX module). The objective is

    loss = agg(L_clip) + beta * agg(KL) - entropy_coef * agg(H)

with `L_clip` from `losses.ppo_policy_loss`, `KL` from `kl.kl_divergence`
and `H` the per-token entropy, all reduced by the same `loss_agg_mode`.

Batch (a mapping; every per-token array is aligned with `tokens`, entry t
being about token t given tokens < t, as `logprobs.next_token_logprobs`):

* `tokens`: `[B, T]` int prompt + completion ids.
* `attention_mask`: `[B, T]`, 1 for real tokens, 0 for padding.
* `loss_mask`: `[B, T]`, 1 for tokens the policy is trained on (completion
  tokens, excluding e.g. retrieved or tool-output tokens). Position 0 and
  padding are always excluded.
* `advantages`: `[B]` (broadcast over the loss mask) or `[B, T]`.
* `old_logprobs` (optional): `[B, T]` sampling-policy log-probs; when
  absent the objective is on-policy (`old = stop_gradient(logp)`, ratio 1,
  as TRL with `num_iterations=1`).
* `ref_logprobs` (optional; required when `beta > 0`): `[B, T]` reference
  model log-probs.
"""

import dataclasses
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from common.rl import _checks
from common.rl import advantages as advantages_lib
from common.rl import kl as kl_lib
from common.rl import logprobs as logprobs_lib
from common.rl import losses

REQUIRED_BATCH_KEYS = ('tokens', 'attention_mask', 'loss_mask', 'advantages')
OPTIONAL_BATCH_KEYS = ('old_logprobs', 'ref_logprobs')


@dataclasses.dataclass(frozen=True)
class PolicyLossConfig:
  """Configuration of `make_policy_loss` (TRL/Tunix names).

  Attributes:
    epsilon: lower PPO clip range (and the upper one if `epsilon_high` is
      None).
    epsilon_high: upper clip range (DAPO clip-higher, e.g. 0.28).
    delta: dual-clip bound on the ratio for negative advantages, or None.
    beta: KL coefficient (0 disables the KL term).
    kl_estimator: one of `kl.KL_ESTIMATORS` ('k3' is verl's `low_var_kl`).
    entropy_coef: weight of the entropy bonus (subtracted from the loss).
    loss_agg_mode: one of `losses.LOSS_AGG_MODES`.
    max_len: normaliser of `'dr_grpo'` (e.g. max completion length);
      defaults to the batch's T.
    temperature: sampling temperature the logits are divided by.
    importance_sampling_level: `'token'` (PPO/GRPO) or `'sequence'` (GSPO:
      one length-normalised ratio per sequence).
  """

  epsilon: float = 0.2
  epsilon_high: float | None = None
  delta: float | None = None
  beta: float = 0.0
  kl_estimator: str = 'k3'
  entropy_coef: float = 0.0
  loss_agg_mode: str = 'token-mean'
  max_len: int | None = None
  temperature: float = 1.0
  importance_sampling_level: str = 'token'

  def __post_init__(self):
    _checks.check_choice(
      'kl_estimator', self.kl_estimator, kl_lib.KL_ESTIMATORS
    )
    _checks.check_choice(
      'loss_agg_mode', self.loss_agg_mode, losses.LOSS_AGG_MODES
    )
    _checks.check_choice(
      'importance_sampling_level',
      self.importance_sampling_level,
      losses.IMPORTANCE_SAMPLING_LEVELS,
    )
    losses._check_ppo_args(self.epsilon, self.epsilon_high, self.delta)
    if self.beta < 0:
      raise ValueError(f'beta must be >= 0; got {self.beta}.')
    if self.entropy_coef < 0:
      raise ValueError(f'entropy_coef must be >= 0; got {self.entropy_coef}.')
    if self.max_len is not None and self.max_len <= 0:
      raise ValueError(f'max_len must be > 0 or None; got {self.max_len}.')
    if self.temperature <= 0:
      raise ValueError(f'temperature must be > 0; got {self.temperature}.')

  @classmethod
  def from_dict(cls, config: Mapping[str, Any]) -> 'PolicyLossConfig':
    """Builds a config from a dict / ConfigDict, rejecting unknown keys."""
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(config) - set(allowed))
    if unknown:
      raise ValueError(
        f'Unknown PolicyLossConfig field(s) {unknown}; allowed fields: '
        f'{", ".join(allowed)}.'
      )
    return cls(**dict(config))


def _check_batch(batch: Mapping[str, jax.Array], config: PolicyLossConfig):
  missing = [k for k in REQUIRED_BATCH_KEYS if k not in batch]
  if missing:
    raise ValueError(
      f'Batch is missing required key(s) {missing}; required: '
      f'{list(REQUIRED_BATCH_KEYS)}, optional: {list(OPTIONAL_BATCH_KEYS)}.'
    )
  unknown = sorted(
    set(batch) - set(REQUIRED_BATCH_KEYS) - set(OPTIONAL_BATCH_KEYS)
  )
  if unknown:
    raise ValueError(
      f'Batch has unknown key(s) {unknown}; allowed: '
      f'{list(REQUIRED_BATCH_KEYS + OPTIONAL_BATCH_KEYS)}.'
    )
  if config.beta > 0 and 'ref_logprobs' not in batch:
    raise ValueError(
      f'beta={config.beta} > 0 needs batch["ref_logprobs"] [B, T]; pass '
      f'reference log-probs or set beta=0.'
    )
  tokens = batch['tokens']
  _checks.check_rank('tokens', tokens, 2, '[B, T]')
  per_token = ['attention_mask', 'loss_mask'] + [
    k for k in OPTIONAL_BATCH_KEYS if k in batch
  ]
  _checks.check_same_shape(
    ['tokens'] + per_token, [tokens] + [batch[k] for k in per_token]
  )
  adv = batch['advantages']
  if jnp.shape(adv) not in ((tokens.shape[0],), tuple(tokens.shape)):
    raise _checks.ShapeError(
      f'advantages must have shape [B]={(tokens.shape[0],)} or [B, T]='
      f'{tuple(tokens.shape)}; got {tuple(jnp.shape(adv))}.'
    )


def make_policy_loss(
  apply_fn: Callable[[Any, jax.Array, jax.Array], jax.Array],
  config: PolicyLossConfig | Mapping[str, Any] | None = None,
) -> Callable[[Any, Mapping[str, jax.Array]], tuple[jax.Array, dict]]:
  """Returns `loss_fn(params, batch) -> (loss, metrics)` (module docstring).

  Args:
    apply_fn: `(params, tokens [B, T], attention_mask [B, T]) -> logits
      [B, T, V]`.
    config: a `PolicyLossConfig` or a mapping of its fields (default
      config if None).

  Returns:
    A pure, jit-able `loss_fn`. Metrics (scalars, no gradient): `loss`,
    `pg_loss` (aggregated by `loss_agg_mode`), `kl` (token-mean KL
    estimate, present whenever reference log-probs are given, also with
    `beta == 0`), `entropy` (token-mean), `clip_fraction`,
    `dual_clip_fraction`, `approx_kl`, `ratio_mean`, `ratio_max`,
    `num_tokens`.
  """
  if config is None:
    config = PolicyLossConfig()
  elif not isinstance(config, PolicyLossConfig):
    config = PolicyLossConfig.from_dict(config)

  def loss_fn(params, batch):
    _check_batch(batch, config)
    tokens = batch['tokens']
    attention_mask = batch['attention_mask']
    logits = apply_fn(params, tokens, attention_mask)
    if jnp.ndim(logits) != 3 or logits.shape[:2] != tokens.shape:
      raise _checks.ShapeError(
        f'apply_fn must return logits [B, T, V] with [B, T]='
        f'{tuple(tokens.shape)}; got {tuple(jnp.shape(logits))}.'
      )
    logp = logprobs_lib.next_token_logprobs(logits, tokens, config.temperature)
    mask = (batch['loss_mask'] != 0) & (attention_mask != 0)
    mask = mask.at[:, 0].set(False)
    old_logp = batch.get('old_logprobs')
    if old_logp is None:
      old_logp = jax.lax.stop_gradient(logp)
    adv = batch['advantages']
    if adv.ndim == 1:
      adv = advantages_lib.broadcast_to_tokens(adv, mask)
    agg = dict(loss_agg_mode=config.loss_agg_mode, max_len=config.max_len)
    pg_loss, metrics = losses.ppo_policy_loss(
      logp,
      old_logp,
      adv,
      mask,
      epsilon=config.epsilon,
      epsilon_high=config.epsilon_high,
      delta=config.delta,
      importance_sampling_level=config.importance_sampling_level,
      **agg,
    )
    loss = pg_loss
    ent = logprobs_lib.next_token_entropy(logits, config.temperature)
    if config.entropy_coef > 0:
      loss = loss - config.entropy_coef * losses.aggregate_loss(
        ent, mask, **agg
      )
    metrics['entropy'] = advantages_lib.masked_mean(ent, mask)
    if 'ref_logprobs' in batch:
      kl = kl_lib.kl_divergence(
        logp, batch['ref_logprobs'], config.kl_estimator
      )
      if config.beta > 0:
        loss = loss + config.beta * losses.aggregate_loss(kl, mask, **agg)
      metrics['kl'] = advantages_lib.masked_mean(kl, mask)
    metrics['pg_loss'] = pg_loss
    metrics['loss'] = loss
    metrics['num_tokens'] = jnp.sum(mask).astype(jnp.float32)
    metrics = jax.tree.map(jax.lax.stop_gradient, metrics)
    return loss, metrics

  return loss_fn
