"""Stage 3: RL of one reward arm, on `common.train.fit_on_policy`.

Each step `s` is `rollout_fn(state, s)` then the jitted update:

1. `rl.prompts_per_step` train questions (the `s`-th draw of one seeded
   generator, made up front), each repeated `rl.num_generations` times,
   rolled out by the current policy with key `fold_in(fold_in(seed, 2), s)`
   (multi-turn search, `pica.rollout`), so a resumed run samples exactly
   what an uninterrupted one would;
2. outcome scores (`pica.rewards.outcome_scores`) and, for the `'pica'`
   arm, hazard step rewards at each served `</search>` of a successful
   trajectory (`pica.rewards.step_rewards` on the hazard model); for the
   `'oracle'` arm the same step rewards from the pivot labels of the
   rollout itself (`pica.hazard.oracle_hazards`), the arm's ceiling;
3. the update (the arm's algorithm: `rl.algorithm`, or its name's suffix,
   `'pica_ppo'`): `'grpo'` turn-level GRPO
   (`common.rl.turn_level_advantages` with `rl.norm_mode`, `rl.std_floor`
   and `rl.step_weight`) with the clipped surrogate and a k3 KL to the
   SFT reference; `'ppo'` `pica.ppo` (critic, token rewards, KL-in-reward,
   GAE, whitening).

The state's `params` is `{'policy': ...}`, plus `'critic'` under PPO (with
`opt_state` the matching dict of the two optimizers' states), so the
critic checkpoints and resumes with the policy. Retrieved tokens are out
of the policy loss and the KL (`Rollout.loss_mask`).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common import models
from common import train
from common.rl import advantages as adv_lib
from common.rl import logprobs as lp_lib
from common.rl import policy_loss
from pica import config as config_lib
from pica import hazard
from pica import pivots
from pica import ppo
from pica import rewards
from pica.stages import context as context_lib
from pica.stages import optimizer


@functools.partial(jax.jit, static_argnums=0)
def _ref_logprobs(graphdef, params, tokens, mask):
  logits = models.apply_fn(graphdef)(params, tokens, mask)
  return lp_lib.next_token_logprobs(logits, tokens)


@functools.partial(jax.jit, static_argnums=0)
def _hazards(graphdef, params, tokens, mask, positions):
  v = models.merge(graphdef, params).step_logits(tokens, mask, positions)
  return jax.nn.sigmoid(v)


@functools.partial(jax.jit, static_argnums=0)
def _values(graphdef, params, tokens, mask):
  return models.merge(graphdef, params).token_values(tokens, mask)


def reward_config(config, arm: str) -> rewards.RewardConfig:
  """The arm's rewards: `'outcome'` drops the step rewards; `'pica'` and
  `'oracle'` keep them (hazards from the CRM or from the pivot labels)."""
  kw = dict(config.reward)
  step_form = kw.pop('step_form', rewards.RewardConfig.step_form)
  return rewards.RewardConfig(
    step_form=None if arm == 'outcome' else step_form, **kw
  )


def question_indices(seed: int, n: int, per_step: int, steps: int):
  """`[steps, per_step]` train-question indices of each step."""
  rng = np.random.default_rng([seed, 3])
  return np.array(
    [rng.choice(n, per_step, replace=False) for _ in range(steps)], np.int64
  ).reshape(steps, per_step)


def policy_params(state: train.TrainState):
  """The policy's parameters in an RL state."""
  return state.params['policy']


class ArmTrainer:
  """The state, update and rollout of one arm (see the module docstring).

  Args:
    ctx: the run's context (world, sampler, mesh).
    arm: an arm of `pica.config.ARM_NAMES`: `'outcome'`, `'pica'` or
      `'oracle'`, optionally with its algorithm (`'pica_ppo'`; else
      `rl.algorithm`).
    sft_params: the SFT policy: the initial policy, the KL reference and
      (PPO) the critic's backbone.
    hazard_model: `(graphdef, params)` of the trained hazard model.
  """

  def __init__(
    self, ctx: context_lib.Context, arm: str, sft_params, hazard_model
  ):
    c = ctx.config.rl
    self.ctx, self.arm, self.sft_params = ctx, arm, sft_params
    self.h_graph, self.h_params = hazard_model
    self.reward_arm, self.algorithm = config_lib.split_arm(arm, c.algorithm)
    self.rcfg = reward_config(ctx.config, self.reward_arm)
    self.key = jax.random.fold_in(ctx.key, 2)
    self.idx = question_indices(
      ctx.seed, len(ctx.train_qs), c.prompts_per_step, c.steps
    )
    tx = optimizer.adam(c.learning_rate, c.warmup_steps)
    temperature = ctx.rollout_cfg.temperature
    if self.algorithm == 'grpo':
      loss_fn = policy_loss.make_policy_loss(
        ctx.apply_fn,
        policy_loss.PolicyLossConfig(
          epsilon=c.epsilon,
          epsilon_high=c.epsilon_high,
          beta=c.beta,
          temperature=temperature,
        ),
      )

      def train_loss(params, batch, rng):
        del rng
        loss, m = loss_fn(params['policy'], batch)
        return loss, {k: v for k, v in m.items() if k != 'loss'}

      self.step_fn = train.make_train_step(train_loss, tx, has_aux=True)
      params = {'policy': sft_params}
      self.init_state = train.TrainState.create(params, tx, ctx.seed)
      return
    self.pcfg = ppo.PPOConfig(
      gamma=c.gamma,
      lam=c.lam,
      epsilon=c.epsilon,
      epsilon_high=c.epsilon_high,
      cliprange_value=c.cliprange_value,
      beta=c.beta,
      entropy_coef=c.entropy_coef,
      gae_mask=c.gae_mask,
      temperature=temperature,
    )
    critic = ppo.ValueModel.from_policy(
      ctx.graphdef, sft_params, rngs=nnx.Rngs(ctx.seed + 11)
    )
    self.c_graph, c_params = models.split(critic)
    critic_tx = optimizer.adam(c.critic_learning_rate, c.warmup_steps)
    update = ppo.make_ppo_update(
      ctx.apply_fn, self.c_graph, self.pcfg, tx, critic_tx
    )

    def step_fn(state, batch):
      p, v, p_opt, v_opt, m = update(
        state.params['policy'],
        state.params['critic'],
        state.opt_state['policy'],
        state.opt_state['critic'],
        batch,
      )
      new = state._replace(
        params={'policy': p, 'critic': v},
        opt_state={'policy': p_opt, 'critic': v_opt},
      )
      return new, m

    self.step_fn = step_fn
    self.init_state = train.TrainState(
      step=jnp.zeros((), jnp.int32),
      params={'policy': sft_params, 'critic': c_params},
      opt_state={
        'policy': tx.init(sft_params),
        'critic': critic_tx.init(c_params),
      },
      rng=jax.random.key(ctx.seed),
    )

  def oracle_hazards(self, ro, qs, ok) -> np.ndarray:
    """`[B, K + 1]` hazards from the pivot labels of each rollout."""
    c = self.ctx.config.hazard
    anns = [
      pivots.annotate(q['decomposition'], bool(k), retrieved_ids=ids)
      for q, k, ids in zip(qs, ok, ro.retrieved, strict=True)
    ]
    lab = pivots.label_arrays(anns, ro.search_ends.shape[1] + 1)
    return hazard.oracle_hazards(
      lab['labels'], lab['valid'], c.oracle_low, c.oracle_high
    )

  def rollout_fn(self, state: train.TrainState, step: int):
    """`(batch, metrics)` of step `step` from the current policy."""
    ctx, rcfg = self.ctx, self.rcfg
    g = ctx.config.rl.num_generations
    qs = [ctx.train_qs[j] for j in self.idx[step] for _ in range(g)]
    ro = ctx.rollout(
      state.params['policy'], qs, jax.random.fold_in(self.key, step)
    )
    score, ok = rewards.outcome_scores(
      ro.texts, [q['golden_answers'] for q in qs], rcfg
    )
    step_mask = ro.search_ends >= 0
    step_r = jnp.zeros(ro.search_ends.shape)
    if self.reward_arm == 'oracle':
      h = self.oracle_hazards(ro, qs, ok)
      step_r = rewards.step_rewards(h[:, :-1], step_mask & ok[:, None], rcfg)
    elif rcfg.step_form is not None:
      hi = ctx.hazard_inputs(ro)
      h = _hazards(
        self.h_graph, self.h_params, hi.tokens, hi.mask, hi.positions
      )
      step_r = rewards.step_rewards(h[:, :-1], step_mask & ok[:, None], rcfg)
    tokens = jnp.concatenate([ro.prompt_tokens, ro.tokens], 1)
    mask = jnp.concatenate([ro.prompt_mask, ro.response_mask], 1)
    zeros = jnp.zeros(ro.prompt_mask.shape)
    loss_mask = jnp.concatenate([zeros.astype(bool), ro.loss_mask], 1)
    batch = {
      'tokens': tokens,
      'attention_mask': mask,
      'loss_mask': loss_mask,
      'old_logprobs': jnp.concatenate([zeros, ro.logprobs], 1),
      'ref_logprobs': _ref_logprobs(
        ctx.graphdef, self.sft_params, tokens, mask
      ),
    }
    if self.algorithm == 'grpo':
      use_steps = step_mask & ok[:, None] & (rcfg.step_form is not None)
      c = ctx.config.rl
      adv = adv_lib.turn_level_advantages(
        jnp.asarray(rcfg.outcome_scale * score),
        step_r,
        use_steps,
        jnp.asarray(ro.search_ends),
        ro.response_mask,
        g,
        norm_mode=c.norm_mode,
        std_floor=c.std_floor,
        step_weight=c.step_weight,
      )
      batch['advantages'] = jnp.concatenate([zeros, adv], 1)
    else:
      # the outcome sits on the last token of the GAE mask (pica.ppo)
      gae_resp = (
        ro.response_mask if self.pcfg.gae_mask == 'response' else ro.loss_mask
      )
      tok_r = rewards.token_rewards(
        score,
        ok,
        gae_resp,
        ro.search_ends,
        step_r if rcfg.step_form is not None else None,
        rcfg,
      )
      batch['response_mask'] = jnp.concatenate(
        [zeros.astype(bool), jnp.asarray(ro.response_mask, bool)], 1
      )
      batch['rewards'] = jnp.concatenate([zeros, tok_r], 1)
      batch['old_values'] = _values(
        self.c_graph, state.params['critic'], tokens, mask
      )
    metrics = {
      'train_em': float(np.mean(context_lib.success(ro.texts, qs))),
      'outcome_score': float(np.mean(score)),
      'searches': float(ro.num_searches.mean()),
    }
    return batch, metrics

  def train(
    self, workdir: str | os.PathLike, num_steps: int | None = None
  ) -> tuple[train.TrainState, list[dict[str, Any]]]:
    """Runs (or resumes) the arm to `num_steps` (default `rl.steps`)."""
    c = self.ctx.config.rl
    steps = context_lib.stage_steps(num_steps, c.steps, 'rl')
    return train.fit_on_policy(
      self.init_state,
      self.step_fn,
      self.rollout_fn,
      num_steps=steps,
      workdir=workdir,
      mesh=self.ctx.mesh,
      checkpoint_every=c.checkpoint_every,
      log_every=c.log_every,
      progress=False,
    )
