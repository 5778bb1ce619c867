"""GRPO over an NNX causal LM on the shared on-policy loop.

    trainer = GRPOTrainer(model, tokenizer, optax.adamw(1e-4), reward_fn,
                          GRPOConfig(num_steps=200))
    params, history = trainer.train(prompt_source, workdir)

Each step `s`:

1. `prompts, columns = prompt_source(s)`: `prompts_per_step` prompt texts
   and per-prompt columns (e.g. `golden_answers`), a pure function of `s`
   so that a resumed run sees the same data.
2. Each prompt is repeated `num_generations` times (groups are consecutive
   rows) and completed by the KV-cache `Sampler` (key: `fold_in(seed, s)`).
3. `reward_fn(prompts, completions, **columns) -> [B * G]` (TRL's reward
   protocol; every column repeated per generation) scores the decoded
   completions.
4. Group-normalised advantages (`advantages.group_advantages`), then
   `num_iterations` clipped policy-gradient updates
   (`policy_loss.make_policy_loss`) on the sampled batch, with an optional
   KL penalty (`beta`) to a frozen reference model.

Steps 1-3 are the `rollout_fn` and step 4 the `step_fn` of
`common.train.fit_on_policy`, so checkpoints, resume, metrics, history
across resumes and NaN checks are the shared loop's.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from common.models import functional
from common.rl import advantages as advantages_lib
from common.rl import logprobs as logprobs_lib
from common.rl import policy_loss as policy_loss_lib
from common.sampling import sampler as sampler_lib
from common.train import loop as loop_lib
from common.train import mesh as mesh_lib
from common.train import state as state_lib

RewardFn = Callable[..., Any]
PromptSource = Callable[[int], tuple[list[str], Mapping[str, list]]]
EvalFn = Callable[[Any], Mapping[str, float]]


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
  """GRPO hyperparameters (TRL/Tunix names where they exist).

  Attributes:
    num_steps: total rollout-and-update steps.
    prompts_per_step: distinct prompts per step.
    num_generations: completions per prompt (the group size G, >= 2).
    max_prompt_len: prompts are left-padded to this many tokens.
    max_new_tokens: completion length limit.
    temperature: sampling temperature (> 0).
    top_k: sampling top-k (None: off).
    top_p: sampling nucleus mass (1: off).
    scale_rewards: 'group', 'batch' or 'none' (see `group_advantages`).
    num_iterations: updates per sampled batch (PPO epochs); with more than
      one, the sampler's log-probs are the old policy's.
    loss: the policy objective (`beta` > 0 needs a reference model).
    checkpoint_every: save every N steps (None: only at the end).
    log_every: log every N steps.
    eval_every: run `eval_fn` every N steps (None: only at start and end).
    seed: rollout seed.
  """

  num_steps: int
  prompts_per_step: int = 16
  num_generations: int = 8
  max_prompt_len: int = 128
  max_new_tokens: int = 16
  temperature: float = 1.0
  top_k: int | None = None
  top_p: float = 1.0
  scale_rewards: str = 'group'
  num_iterations: int = 1
  loss: policy_loss_lib.PolicyLossConfig = dataclasses.field(
    default_factory=policy_loss_lib.PolicyLossConfig
  )
  checkpoint_every: int | None = 50
  log_every: int = 10
  eval_every: int | None = None
  seed: int = 0

  def __post_init__(self):
    for name in (
      'num_steps',
      'prompts_per_step',
      'max_prompt_len',
      'max_new_tokens',
      'num_iterations',
      'log_every',
    ):
      v = getattr(self, name)
      if not isinstance(v, int) or v < 1:
        raise ValueError(f'GRPOConfig.{name} must be an int >= 1, got {v!r}')
    if not isinstance(self.num_generations, int) or self.num_generations < 2:
      raise ValueError(
        'GRPOConfig.num_generations must be an int >= 2 (a group needs a '
        f'baseline), got {self.num_generations!r}'
      )
    if not self.temperature > 0:
      raise ValueError(
        f'GRPOConfig.temperature must be > 0, got {self.temperature}'
      )
    if self.scale_rewards not in advantages_lib.SCALE_REWARDS:
      raise ValueError(
        f'GRPOConfig.scale_rewards={self.scale_rewards!r}; allowed: '
        f'{advantages_lib.SCALE_REWARDS}'
      )
    if self.num_iterations > 1 and self.loss.temperature != 1.0:
      raise ValueError(
        'GRPOConfig: num_iterations > 1 reuses the sampler log-probs, '
        'which are at temperature 1; set loss.temperature=1.0'
      )


def rollout_batch(
  prompt_tokens: np.ndarray,
  prompt_mask: np.ndarray,
  out: sampler_lib.GenerationOutput,
) -> dict[str, np.ndarray]:
  """Joins left-padded prompts and right-padded completions.

  Args:
    prompt_tokens: `[B, P]` left-padded prompt ids.
    prompt_mask: `[B, P]` bool.
    out: the sampler's output for these prompts (`tokens`, `mask`,
      `logprobs` `[B, N]`).

  Returns:
    `{'tokens', 'attention_mask', 'loss_mask', 'old_logprobs'}`, each
    `[B, P + N]`, aligned as `policy_loss` expects (entry t is about token
    t); the loss mask covers exactly the generated tokens.
  """
  c_mask = np.asarray(out.mask, bool)
  zeros = np.zeros_like(prompt_mask, bool)
  return {
    'tokens': np.concatenate([prompt_tokens, np.asarray(out.tokens)], 1).astype(
      np.int32
    ),
    'attention_mask': np.concatenate([prompt_mask, c_mask], 1),
    'loss_mask': np.concatenate([zeros, c_mask], 1),
    'old_logprobs': np.concatenate(
      [np.zeros(prompt_mask.shape, np.float32), np.asarray(out.logprobs)], 1
    ),
  }


def _repeat(columns: Mapping[str, list], n: int, g: int) -> dict[str, list]:
  out = {}
  for k, v in columns.items():
    if len(v) != n:
      raise ValueError(
        f'prompt_source column {k!r} has {len(v)} entries for {n} prompts'
      )
    out[k] = [x for x in v for _ in range(g)]
  return out


class GRPOTrainer:
  """GRPO on an NNX causal LM with the KV-cache sampler (see module doc)."""

  def __init__(
    self,
    model: nnx.Module,
    tokenizer,
    tx: optax.GradientTransformation,
    reward_fn: RewardFn,
    config: GRPOConfig,
    *,
    ref_params: Any = None,
    mesh: jax.sharding.Mesh | None = None,
  ):
    """Builds the sampler and the jitted update.

    Args:
      model: the policy (e.g. `common.models.Transformer`, already SFT-ed);
        its full `nnx.split` state is trained.
      tokenizer: encodes prompts and decodes completions (`encode_batch`,
        `decode`, `eos_id`, `pad_id`).
      tx: the optimizer.
      reward_fn: `reward_fn(prompts, completions, **columns) -> [B * G]`.
      config: a `GRPOConfig`.
      ref_params: reference-model state for the KL term; default: the
        policy's initial parameters (used only when `config.loss.beta > 0`).
      mesh: the mesh (default: `make_mesh()` over all devices). Rollout
        and update are data-parallel: parameters are replicated and the
        `prompts_per_step * num_generations` rows are split over the batch
        axes, so that number must divide by the mesh's batch shards.
    """
    self.config = config
    self.tokenizer = tokenizer
    self.reward_fn = reward_fn
    self.tx = tx
    self.mesh = mesh_lib.make_mesh() if mesh is None else mesh
    rows = config.prompts_per_step * config.num_generations
    shards = mesh_lib.num_batch_shards(self.mesh)
    if rows % shards:
      raise ValueError(
        f'GRPOConfig: prompts_per_step * num_generations = {rows} rows do '
        f'not split over the {shards} batch shards of the mesh; make it a '
        'multiple, or pass a smaller mesh.'
      )
    self.graphdef, self.init_params = functional.split(model)
    capacity = config.max_prompt_len + config.max_new_tokens
    self.sampler = sampler_lib.Sampler(model, capacity=capacity)
    self.gen_config = sampler_lib.GenerationConfig(
      max_new_tokens=config.max_new_tokens,
      temperature=config.temperature,
      top_k=config.top_k,
      top_p=config.top_p,
      eos_ids=(tokenizer.eos_id,),
      pad_id=tokenizer.pad_id,
    )
    apply_fn = functional.apply_fn(self.graphdef)
    self.ref_params = mesh_lib.replicate(
      ref_params if ref_params is not None else self.init_params, self.mesh
    )
    self._logprobs = jax.jit(
      lambda p, t, m: logprobs_lib.next_token_logprobs(apply_fn(p, t, m), t)
    )
    loss_fn = policy_loss_lib.make_policy_loss(apply_fn, config.loss)

    def train_loss(params, batch, rng):
      del rng
      loss, metrics = loss_fn(params, batch)
      metrics = {k: v for k, v in metrics.items() if k != 'loss'}
      return loss, metrics

    update = state_lib.make_train_step(train_loss, tx, has_aux=True)

    def step_fn(state, batch):
      metrics = {}
      for _ in range(config.num_iterations):  # PPO epochs on one rollout
        state, metrics = update(state, batch)
      return state, metrics

    self.step_fn = step_fn

  def init_state(self) -> state_lib.TrainState:
    """The step-0 `TrainState` from the model's parameters."""
    params = jax.tree.map(jnp.copy, self.init_params)
    state = state_lib.TrainState.create(params, self.tx, self.config.seed)
    return mesh_lib.replicate(state, self.mesh)

  def rollout(
    self, params, prompts: list[str], columns: Mapping[str, list], step: int
  ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Samples and scores one step's groups.

    Returns:
      `(batch, info)`: the update batch (with `advantages`, and
      `ref_logprobs` when `beta > 0`) and `info` with `rewards` `[B*G]`,
      `completions`, `prompts` and the sampler `output`.
    """
    cfg = self.config
    g = cfg.num_generations
    if len(prompts) != cfg.prompts_per_step:
      raise ValueError(
        f'prompt_source({step}) gave {len(prompts)} prompts; '
        f'GRPOConfig.prompts_per_step={cfg.prompts_per_step}'
      )
    enc = self.tokenizer.encode_batch(
      prompts, cfg.max_prompt_len, left_pad=True
    )
    p_tokens = np.repeat(enc.ids, g, axis=0)
    p_mask = np.repeat(enc.mask, g, axis=0)
    self.sampler.update(params)
    key = jax.random.fold_in(jax.random.key(cfg.seed), step)
    out = self.sampler.sample(
      *mesh_lib.shard_batch((p_tokens, p_mask), self.mesh),
      key,
      self.gen_config,
    )
    out = jax.device_get(out)
    completions = [
      self.tokenizer.decode(t[m])
      for t, m in zip(out.tokens, out.mask, strict=True)
    ]
    rep_prompts = [p for p in prompts for _ in range(g)]
    rewards = np.asarray(
      self.reward_fn(
        rep_prompts, completions, **_repeat(columns, len(prompts), g)
      ),
      np.float32,
    )
    if rewards.shape != (len(rep_prompts),):
      raise ValueError(
        f'reward_fn returned shape {rewards.shape}; expected '
        f'({len(rep_prompts)},), one reward per completion'
      )
    if not np.all(np.isfinite(rewards)):
      bad = np.nonzero(~np.isfinite(rewards))[0][:5].tolist()
      raise ValueError(f'reward_fn returned non-finite rewards at rows {bad}')
    batch = rollout_batch(p_tokens, p_mask, out)
    if cfg.num_iterations == 1:
      del batch['old_logprobs']  # on-policy: ratio 1, exact gradient
    batch['advantages'] = np.asarray(
      advantages_lib.group_advantages(
        jnp.asarray(rewards), g, cfg.scale_rewards
      )
    )
    if cfg.loss.beta > 0:
      tokens, mask = mesh_lib.shard_batch(
        (batch['tokens'], batch['attention_mask']), self.mesh
      )
      batch['ref_logprobs'] = np.asarray(
        self._logprobs(self.ref_params, tokens, mask)
      )
    info = {
      'rewards': rewards,
      'completions': completions,
      'prompts': rep_prompts,
      'output': out,
    }
    return batch, info

  def rollout_fn(self, prompt_source: PromptSource) -> loop_lib.RolloutFn:
    """`rollout_fn(state, step) -> (batch, metrics)` for `fit_on_policy`."""

    def rollout_fn(state, step):
      prompts, columns = prompt_source(step)
      batch, info = self.rollout(state.params, prompts, columns, step)
      out = info['output']
      return batch, {
        'reward_mean': float(info['rewards'].mean()),
        'reward_std': float(info['rewards'].std()),
        'completion_length': float(np.mean(out.lengths)),
        'finished_eos': float(
          np.mean(out.finish_reason == sampler_lib.FINISH_EOS)
        ),
      }

    return rollout_fn

  def train(
    self,
    prompt_source: PromptSource,
    workdir: str | os.PathLike,
    eval_fn: EvalFn | None = None,
    state: state_lib.TrainState | None = None,
  ) -> tuple[state_lib.TrainState, list[dict[str, Any]]]:
    """Runs (or resumes) GRPO until `config.num_steps`.

    Args:
      prompt_source: `prompt_source(step) -> (prompts, columns)`.
      workdir: folder for `checkpoints/`, `metrics.jsonl` and TensorBoard.
      eval_fn: optional `eval_fn(params) -> {name: float}`, logged with an
        `eval_` prefix at step 0, every `eval_every` steps and at the end.
      state: starting state (default: `init_state()`); ignored when a
        checkpoint exists in `workdir`.

    Returns:
      `(final_state, history)`: `history` holds the logged records of the
      whole run, including those from before a resume (`step`,
      `reward_mean`, ..., `eval_*`).

    Raises:
      loop.NonFiniteError: the loss, a gradient or a rollout metric became
        NaN/inf; nothing is saved for that step.
    """
    cfg = self.config
    if state is None:
      state = self.init_state()
    return loop_lib.fit_on_policy(
      state,
      self.step_fn,
      self.rollout_fn(prompt_source),
      num_steps=cfg.num_steps,
      workdir=workdir,
      mesh=self.mesh,
      checkpoint_every=cfg.checkpoint_every,
      log_every=cfg.log_every,
      eval_fn=None if eval_fn is None else (lambda s: eval_fn(s.params)),
      eval_every=cfg.eval_every,
      progress=False,
      eval_at_start=True,
    )


def section_fields() -> dict[str, Any]:
  """`common.schema` checks of a config section's GRPO hyperparameters.

  The fields `config_from_section` reads: `steps`, `prompts_per_step`,
  `num_generations`, `learning_rate`, `temperature`, `epsilon`,
  `epsilon_high`, `beta`. An experiment adds its own fields beside them:
  `{'grpo': {**grpo.section_fields(), 'eval_every': ...}}`.
  """
  from common import schema  # noqa: PLC0415 (schema is a leaf module)

  positive = schema.number(0.0, open_low=True)
  return {
    'steps': schema.integer(1),
    'prompts_per_step': schema.integer(1),
    'num_generations': schema.integer(2),
    'learning_rate': positive,
    'temperature': positive,
    'epsilon': positive,
    'epsilon_high': positive,
    'beta': schema.number(0.0),
  }


def config_from_section(section: Any, **fields) -> GRPOConfig:
  """The `GRPOConfig` of a section checked by `section_fields`.

  Args:
    section: the config section (`steps`, `prompts_per_step`, ...).
    **fields: the other `GRPOConfig` fields (`max_prompt_len`,
      `max_new_tokens`, `checkpoint_every`, `log_every`, `seed`, ...).
  """
  return GRPOConfig(
    num_steps=section.steps,
    prompts_per_step=section.prompts_per_step,
    num_generations=section.num_generations,
    temperature=section.temperature,
    loss=policy_loss_lib.PolicyLossConfig(
      epsilon=section.epsilon,
      epsilon_high=section.epsilon_high,
      beta=section.beta,
      temperature=section.temperature,  # the policy that sampled
    ),
    **fields,
  )
