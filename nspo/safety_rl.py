"""The RL stage of the NSPO experiment: safety GRPO with optional projection.

From the SFT'd base model (`common.train.sft_world`), GRPO with NSPO's -1/0
safety reward (-1 for complying with a restricted request, and -1 for
refusing a benign one), no KL. The arms differ only in the optimizer:

* `grpo`: plain AdamW;
* `nspo`: `optax.chain(adamw, nspo.project(spaces), freeze)`;
* `nspo_reproject`: the released code's variant, `nspo.reproject_every`.

Prompts: a share `config.rl.harmful_fraction` of restricted requests (1.0,
safety prompts only, is the paper's setting), the rest benign prompts of the
`general_fit` half. Each arm has a `_mixed` twin (`grpo_mixed`, ...) that
uses `config.rl.mixed_harmful_fraction` instead (the mixed prompt set with
a -1 reward for refusing a benign prompt).

Every arm trains the same parameters (`config.rl.trainable`, a regex
searched in `common.optim.path_str` paths); the rest are frozen with
`common.optim.freeze`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from common import models
from common import optim
from common import rl
from common import train
from common.synthetic import safety
from common.train import sft_world
from nspo import transforms

BASE_ARMS = ('grpo', 'nspo', 'nspo_reproject')
ARMS = BASE_ARMS + tuple(f'{a}_mixed' for a in BASE_ARMS)


def base_arm(arm: str) -> str:
  """The optimizer arm of `arm` (`'nspo_mixed'` -> `'nspo'`)."""
  if arm not in ARMS:
    raise ValueError(f'unknown arm {arm!r}; allowed: {ARMS}.')
  return arm.removesuffix('_mixed')


def harmful_fraction(config: ml_collections.ConfigDict, arm: str) -> float:
  """The share of restricted prompts in the arm's RL batches."""
  r = config.rl
  return (
    r.mixed_harmful_fraction if arm.endswith('_mixed') else r.harmful_fraction
  )


def safety_reward(refused: jax.Array, harmful: jax.Array) -> jax.Array:
  """`[B]` reward: 0 when the refusal decision is right, else -1.

  Restricted request: refusing scores 0, complying -1 (NSPO's -1/0 safety
  reward). Benign request: complying scores 0, refusing -1.
  """
  return jnp.where(refused == harmful, 0.0, -1.0)


def frozen_mask(params: Any, trainable: str) -> Any:
  """Bool pytree: True for leaves whose path `trainable` does not select.

  `trainable` is searched in each path (`common.optim.path_mask` with
  `match='search'`), so `r'/(attn|mlp)/\\w+_proj/kernel$'` selects every
  projection kernel and `'.*'` everything.

  Raises:
    ValueError: the pattern selects no parameter.
  """
  selected = optim.path_mask(params, trainable, match='search')
  return jax.tree.map(lambda m: not m, selected)


def make_optimizer(
  config: ml_collections.ConfigDict, arm: str, spaces, params
) -> optax.GradientTransformation:
  """AdamW (`common.optim`), the arm's NSPO transform, the frozen mask."""
  arm = base_arm(arm)
  r = config.rl
  parts = [
    optim.make_optimizer(
      {
        'name': 'adamw',
        'learning_rate': r.learning_rate,
        'b1': r.b1,
        'weight_decay': r.weight_decay,
        'weight_decay_mask': 'all',
      }
    )
  ]
  if arm == 'nspo':
    parts.append(transforms.project(spaces))
  parts.append(optim.freeze(frozen_mask(params, r.trainable)))
  if arm == 'nspo_reproject':
    parts.append(transforms.reproject_every(spaces, r.reproject_every))
  return optax.chain(*parts)


def make_grpo_step(
  config: ml_collections.ConfigDict, prep: sft_world.Prepared, tx
):
  """`step_fn(state, batch)` for `fit`: sample G responses per prompt
  (inside the jitted step, from `state.rng`), reward, PPO-clip update.

  `batch` holds `prompt [B, P]`, `prompt_mask [B, P]`, `harmful [B]`.
  """
  r = config.rl
  g = r.num_generations
  refusal = jnp.asarray(safety.refusal_ids(prep.task))
  eos = prep.task.tokenizer.eos_id
  loss_fn = rl.make_policy_loss(
    models.apply_fn(prep.graphdef),
    rl.PolicyLossConfig(epsilon=r.epsilon, beta=0.0),
  )

  def step_fn(state: train.TrainState, batch):
    rng, key = jax.random.split(state.rng)
    prompt = jnp.repeat(batch['prompt'], g, axis=0)
    pmask = jnp.repeat(batch['prompt_mask'], g, axis=0)
    harmful = jnp.repeat(batch['harmful'], g, axis=0)
    out = train.decode(
      prep.graphdef,
      state.params,
      prompt,
      pmask,
      key,
      prep.response_len,
      r.temperature,
      eos,
    )
    refused = train.starts_with(out.tokens, refusal)
    reward = safety_reward(refused, harmful)
    adv = rl.group_advantages(reward, g)
    gen_mask = out.mask
    b = {
      'tokens': jnp.concatenate([prompt, out.tokens], 1),
      'attention_mask': jnp.concatenate([pmask, gen_mask], 1),
      'loss_mask': jnp.concatenate([jnp.zeros_like(pmask), gen_mask], 1),
      'advantages': adv,
    }
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, b
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    hf = harmful.astype(jnp.float32)
    metrics = {
      'loss': metrics['loss'],
      'reward': jnp.mean(reward),
      'harmful_refusal': jnp.sum(refused * hf) / jnp.maximum(hf.sum(), 1),
      'benign_refusal': jnp.sum(refused * (1 - hf))
      / jnp.maximum((1 - hf).sum(), 1),
      'update_norm': optax.global_norm(updates),
    }
    state = state._replace(params=params, opt_state=opt_state, rng=rng)
    return state, metrics

  return step_fn


def make_prompt_batches(
  config: ml_collections.ConfigDict, prep: sft_world.Prepared, arm: str
):
  """`batches(step)`: restricted and benign prompts (no answers).

  The restricted share is `harmful_fraction(config, arm)`; benign prompts
  come from the `general_fit` half only. A function of the seed and step
  only, so a resumed run sees the same prompts.

  Raises:
    ValueError: a fraction below 1 that rounds to no benign prompt, or one
      that rounds to no restricted prompt.
  """
  r = config.rl
  harm = safety.encode(
    prep.task, prep.task.harmful_train, prep.prompt_len, prep.response_len
  )
  gen = prep.eval_sets['general_fit']
  fraction = harmful_fraction(config, arm)
  n_h = int(round(r.prompts_per_step * fraction))
  n_g = r.prompts_per_step - n_h
  if n_h < 1 or (fraction < 1.0 and n_g < 1):
    field = (
      'mixed_harmful_fraction'
      if arm.endswith('_mixed')
      else ('harmful_fraction')
    )
    raise ValueError(
      f'config.rl.prompts_per_step={r.prompts_per_step} with '
      f'config.rl.{field}={fraction} gives {n_h} restricted and {n_g} '
      'benign prompts per step; each kind the fraction asks for needs >= 1.'
    )

  def batches(step):
    rng = np.random.default_rng([prep.seed, 7, step])
    ih = rng.choice(len(harm['prompt']), n_h, replace=n_h > len(harm['prompt']))
    ig = rng.choice(len(gen['prompt']), n_g, replace=n_g > len(gen['prompt']))
    cat = lambda k: np.concatenate([harm[k][ih], gen[k][ig]])
    return {
      'prompt': cat('prompt'),
      'prompt_mask': cat('prompt_mask'),
      'harmful': cat('harmful'),
    }

  return batches


def train_arm(
  config: ml_collections.ConfigDict,
  prep: sft_world.Prepared,
  arm: str,
  spaces,
  workdir: str,
) -> tuple[train.TrainState, list[dict[str, Any]]]:
  """Runs (or resumes, from `workdir`'s latest checkpoint) one arm."""
  r = config.rl
  tx = make_optimizer(config, arm, spaces, prep.params)
  state = train.TrainState.create(prep.params, tx, prep.seed + 1)
  return train.fit(
    state,
    make_grpo_step(config, prep, tx),
    make_prompt_batches(config, prep, arm),
    num_steps=r.steps,
    workdir=workdir,
    checkpoint_every=r.get('checkpoint_every', 0) or None,
    log_every=r.eval_every,
    eval_fn=lambda s: prep.evaluate(s.params),
    eval_every=r.eval_every,
    progress=False,
  )
