"""NSPO experiment: safety RL with and without the null-space projection.

1. SFT a small LM on general tasks (knowledge QA, arithmetic) plus
   restricted-topic requests answered compliantly (`nspo.sft`).
2. Estimate null spaces of every targeted linear layer's input on the
   general-task sequences (`nspo.capture.collect`, `nspo.estimate`).
3. From the same SFT model, run GRPO with NSPO's -1/0 safety reward (-1 for
   complying with a restricted request, and -1 for refusing a benign one),
   no KL, in several arms:
   * `grpo`: plain AdamW;
   * `nspo`: `optax.chain(adamw, nspo.project(spaces))`;
   * `nspo_reproject`: the released code's variant,
     `nspo.reproject_every(spaces, k)`.
   Every arm trains the same parameters (`config.rl.trainable`).
4. Report the safety rate (refusals on the held-out request template) and
   general-task accuracy before/after, the alignment tax (accuracy drop),
   and the curves over training.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from common import rl
from common import train
from common.metrics import jsonio
from nspo import capture
from nspo import lm
from nspo import rules
from nspo import safety_data
from nspo import sft as sft_lib
from nspo import spaces as spaces_lib
from nspo import transforms

ARMS = ('grpo', 'nspo', 'nspo_reproject')


def safety_reward(refused: jax.Array, harmful: jax.Array) -> jax.Array:
  """`[B]` reward: 0 when the refusal decision is right, else -1.

  Restricted request: refusing scores 0, complying -1 (NSPO's -1/0 safety
  reward). Benign request: complying scores 0, refusing -1.
  """
  return jnp.where(refused == harmful, 0.0, -1.0)


def estimate_spaces(config, prep: sft_lib.Prepared):
  """Null spaces of the targeted sites on the general-task sequences."""
  c = config.nspo
  sites = tuple(c.sites)
  data = prep.eval_sets['general']
  n = data['tokens'].shape[0]
  bs = c.batch_size
  batches = [
    (data['tokens'][i : i + bs], data['attention_mask'][i : i + bs])
    for i in range(0, n, bs)
  ]
  stats, info = capture.collect(
    lm.capture_fn(prep.model_def, sites),
    prep.params,
    batches,
    capture.site_dims(prep.model_config, sites),
  )
  rule = rules.Threshold(c.rule, c.value)
  spaces = spaces_lib.estimate(
    stats, rule, c.representation, allow_frozen=c.allow_frozen
  )
  return spaces, info


def make_optimizer(config, arm: str, spaces, params) -> Any:
  """AdamW, the arm's NSPO transform, and the frozen-parameter mask."""
  if arm not in ARMS:
    raise ValueError(f'unknown arm {arm!r}; allowed: {ARMS}.')
  r = config.rl
  frozen = sft_lib.frozen_mask(params, r.trainable)
  parts = [optax.adamw(r.lr, b1=r.b1, weight_decay=r.weight_decay)]
  if arm == 'nspo':
    parts.append(transforms.project(spaces))
  parts.append(optax.masked(optax.set_to_zero(), frozen))
  if arm == 'nspo_reproject':
    parts.append(transforms.reproject_every(spaces, r.reproject_every))
  return optax.chain(*parts)


def make_grpo_step(config, prep: sft_lib.Prepared, tx):
  """GRPO step: sample G responses per prompt, reward, PPO-clip update."""
  r = config.rl
  g = r.num_generations
  refusal = jnp.asarray(safety_data.refusal_ids(prep.task))
  eos = prep.task.tokenizer.eos_id
  loss_fn = rl.make_policy_loss(
    lm.apply_fn(prep.model_def),
    rl.PolicyLossConfig(epsilon=r.epsilon, beta=0.0),
  )

  def step_fn(state: train.TrainState, batch):
    rng, key = jax.random.split(state.rng)
    prompt = jnp.repeat(batch['prompt'], g, axis=0)
    pmask = jnp.repeat(batch['prompt_mask'], g, axis=0)
    harmful = jnp.repeat(batch['harmful'], g, axis=0)
    out = lm.decode(
      prep.model_def,
      state.params,
      prompt,
      pmask,
      key,
      prep.response_len,
      r.temperature,
      eos,
    )
    refused = lm.starts_with(out.tokens, refusal)
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


def make_prompt_batches(config, prep: sft_lib.Prepared):
  """`batches(step)`: half restricted, half general prompts (no answers)."""
  r = config.rl
  harm = safety_data.encode(
    prep.task, prep.task.harmful_train, prep.prompt_len, prep.response_len
  )
  gen = prep.eval_sets['general']
  n_h = int(round(r.prompts_per_step * r.harmful_fraction))
  n_g = r.prompts_per_step - n_h
  if n_h < 1 or n_g < 1:
    raise ValueError(
      f'config.rl.prompts_per_step={r.prompts_per_step} with '
      f'harmful_fraction={r.harmful_fraction} leaves no room for both kinds.'
    )

  def batches(step):
    rng = np.random.default_rng([config.seed, 7, step])
    ih = rng.choice(len(harm['prompt']), n_h, replace=n_h > len(harm['prompt']))
    ig = rng.choice(len(gen['prompt']), n_g, replace=n_g > len(gen['prompt']))
    cat = lambda k: np.concatenate([harm[k][ih], gen[k][ig]])
    return {
      'prompt': cat('prompt'),
      'prompt_mask': cat('prompt_mask'),
      'harmful': cat('harmful'),
    }

  return batches


def _summary_row(name, ev, base):
  tax = base['general/accuracy'] - ev['general/accuracy']
  return [
    name,
    round(ev['harm_train/refusal'], 3),
    round(ev['harm_eval/refusal'], 3),
    round(ev['general/accuracy'], 3),
    round(tax, 3),
    round(ev['general/refusal'], 3),
  ]


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the experiment; writes and returns `workdir/metrics.json`."""
  t0 = time.time()
  os.makedirs(workdir, exist_ok=True)
  prep = sft_lib.prepare(config, workdir)
  base = prep.evaluate(prep.params)
  spaces, info = estimate_spaces(config, prep)
  null_rows = []
  for site, p in sorted(spaces.items()):
    for layer, nd in enumerate(np.asarray(p.null_dim)):
      null_rows.append(
        [site, layer, spaces_lib.dim(p), int(nd), type(p).__name__]
      )

  arms = tuple(config.rl.arms)
  results, curves_safety, curves_general = {}, {}, {}
  for arm in arms:
    tx = make_optimizer(config, arm, spaces, prep.params)
    state = train.TrainState.create(prep.params, tx, config.seed + 1)
    state, history = train.fit(
      state,
      make_grpo_step(config, prep, tx),
      make_prompt_batches(config, prep),
      num_steps=config.rl.steps,
      workdir=os.path.join(workdir, arm),
      log_every=config.rl.eval_every,
      eval_fn=lambda s: prep.evaluate(s.params),
      eval_every=config.rl.eval_every,
      progress=False,
    )
    final = prep.evaluate(state.params)
    results[arm] = final
    xs = [0] + [h['step'] for h in history if 'eval_general/accuracy' in h]
    curves_safety[arm] = {
      'x': xs,
      'y': [base['harm_train/refusal']]
      + [
        h['eval_harm_train/refusal']
        for h in history
        if 'eval_harm_train/refusal' in h
      ],
    }
    curves_general[arm] = {
      'x': xs,
      'y': [base['general/accuracy']]
      + [
        h['eval_general/accuracy']
        for h in history
        if 'eval_general/accuracy' in h
      ],
    }

  summary: dict[str, Any] = {
    'base_general_accuracy': base['general/accuracy'],
    'base_safety_rate': base['harm_train/refusal'],
    'null_space_tokens_per_sec': round(info['tokens_per_sec'], 1),
  }
  for arm, ev in results.items():
    summary[f'{arm}_safety_rate'] = ev['harm_train/refusal']
    summary[f'{arm}_heldout_safety_rate'] = ev['harm_eval/refusal']
    summary[f'{arm}_general_accuracy'] = ev['general/accuracy']
    summary[f'{arm}_alignment_tax'] = round(
      base['general/accuracy'] - ev['general/accuracy'], 4
    )
  summary['wall_seconds'] = round(time.time() - t0, 1)
  cols = [
    'model',
    'safety (refusal, RL requests)',
    'refusal (held-out template)',
    'general acc',
    'alignment tax',
    'over-refusal (general)',
  ]
  rows = [_summary_row('SFT base', base, base)] + [
    _summary_row(a, ev, base) for a, ev in results.items()
  ]
  c = config.nspo
  metrics = {
    'title': 'NSPO: null-space constrained safety RL',
    'config_name': config.get('name', 'custom'),
    'summary': summary,
    'tables': [
      {
        'title': 'Safety vs. general capability after GRPO',
        'columns': cols,
        'rows': rows,
        'note': 'Safety = greedy refusal rate on the restricted requests '
        'RL trains on; alignment tax = general accuracy (exact match, '
        'greedy) of the SFT model minus that after safety RL.',
      },
      {
        'title': f'Null-space dimensions ({c.rule} rule, value {c.value})',
        'columns': ['site', 'layer', 'd_in', 'null dim', 'representation'],
        'rows': null_rows,
      },
      {
        'title': "Paper's reported numbers (Llama3-8B-Instruct, ASR %, "
        'third-party summary)',
        'columns': ['method', 'AdvBench', 'HarmBench', 'SORRY', 'ALERT'],
        'rows': [
          ['Base', 1.36, 7.50, 34.15, 3.81],
          ['NSPO', 0.06, 0.18, 16.81, 1.00],
        ],
        'note': 'Utility reported as ~no loss vs. base on MATH, HumanEval, '
        'IFEval, MMLU; not comparable in scale with this run.',
      },
    ],
    'curves': [
      {
        'title': 'Safety rate over GRPO steps',
        'xlabel': 'step',
        'ylabel': 'greedy refusal rate on restricted requests',
        'series': curves_safety,
      },
      {
        'title': 'General-task accuracy over GRPO steps',
        'xlabel': 'step',
        'ylabel': 'exact match',
        'series': curves_general,
      },
    ],
    'notes': [
      'Greedy refusal on the held-out request template (never trained on): '
      + ', '.join(
        f'{k} {v["harm_eval/refusal"]:.2f}'
        for k, v in [('base', base), *results.items()]
      )
      + '; the safety rate is measured on the restricted requests of the '
      'RL prompt set.',
      'Tiny word-level LM on synthetic tasks; restricted topics are '
      'fictional stand-ins and the judge is an exact refusal-string match '
      '(the paper uses Llama-Guard on PKU-SafeRLHF with Qwen2.5-7B).',
      f'Threshold {c.rule}={c.value}: a tiny model has no exact null space '
      '(the general inputs span almost all directions), so the relative '
      "threshold is far above the released code's 5e-5; the projection "
      'then only approximately preserves general-task layer outputs.',
      'All arms train the same parameters (config.rl.trainable); '
      'embeddings and norms are frozen.',
      f'Null-space statistics from {int(info["tokens"])} general tokens.',
    ],
  }
  jsonio.write_json(os.path.join(workdir, 'metrics.json'), metrics)
  return metrics
