"""The e3tir experiment's config fields, checked before any work starts.

`validate_config(config)` runs `common.schema` over every field, then the
cross-field checks: the expert budget against the SFT set, the anchor
count against the shortest expert trajectory's anchor positions (checked
again on the data in `experiment.Data`), the arms, and the row counts.
"""

from __future__ import annotations

import ml_collections

from common import models
from common import schema
from e3tir import advantages
from e3tir import anchors
from e3tir import loss
from e3tir import trajectory

ARMS = (
  'zero_rl',
  'sft_rl',
  'sft_rl_matched',
  'e3tir',
  'e3tir_no_branch',
  'e3tir_no_aagd',
  'e3tir_no_hybrid',
)


def fields() -> dict:
  """The checks of every field of the e3tir config."""
  pos = schema.integer(1)
  lr = schema.number(0.0, open_low=True)
  return {
    'name': schema.string(),
    'seeds': schema.seeds(),
    'arms': schema.names(ARMS),
    'task': {
      'seed': schema.integer(0),
      'num_entities': schema.integer(30, 2500),
      'num_distractors': schema.integer(0),
      'qa_train': pos,
      'qa_test': pos,
      'math_train': pos,
      'math_test': pos,
      'min_operands': schema.integer(2, 4),
      'max_operands': schema.integer(2, 4),
      'min_digits': schema.integer(1, 3),
      'max_digits': schema.integer(1, 3),
      'ops': schema.names(('+', '-', '*', '/')),
      'topk': pos,
      'data_file': schema.string(),
    },
    'model': models.check_spec,
    'base': {
      'steps': pos,
      'batch_size': pos,
      'learning_rate': lr,
      'tool_fraction': schema.number(0.0, 1.0),
      'answer_fraction': schema.number(0.0, 1.0),
    },
    'rollout': {
      'max_calls': schema.integer(1, 8),
      'max_new_tokens': schema.integer(4),
      'max_obs_tokens': schema.integer(3),
      'temperature': schema.number(0.0, open_low=True),
    },
    'reward': {
      'kind': schema.choice(trajectory.REWARDS),
      'format_penalty': schema.number(-10.0, 0.0),
    },
    'budget': {
      'expert_fraction': schema.number(0.0, 1.0, open_low=True),
      'warmup_steps': pos,
      'rl_steps': pos,
      'c_data': schema.number(0.0),
      'c_step': schema.number(0.0),
    },
    'sft': {
      'batch_size': pos,
      'learning_rate': lr,
    },
    'rl': {
      'prompts_per_step': pos,
      'num_generations': schema.integer(2),
      'learning_rate': lr,
      'epsilon': schema.number(0.0, open_low=True),
      'entropy_coef': schema.number(0.0),
    },
    'e3tir': {
      'prompts_per_step': pos,
      'num_self': schema.integer(1),
      'num_anchors': pos,
      'branches_per_anchor': pos,
      'anchor_mode': schema.choice(anchors.ANCHOR_MODES),
      'anchor_temperature': schema.number(0.0, open_low=True),
      'combine': schema.choice(advantages.COMBINES),
      'mu': schema.number(0.0, 1.0),
      'aagd': schema.boolean(),
      'prefix_ratio': schema.choice(loss.PREFIX_RATIOS),
      'gamma': schema.number(0.0, open_low=True),
      'learning_rate': lr,
      'min_std': schema.number(0.0),
      'relative_filter': schema.boolean(),
      'margin': schema.number(),
      'gate': schema.boolean(),
      'gate_threshold': schema.number(),
    },
    'eval': {
      'num_math': pos,
      'num_qa': pos,
      'every': pos,
    },
  }


def pool_size(config) -> int:
  """Training questions left for SFT and RL after the base LM's share
  (`base.answer_fraction`; the world may give fewer questions)."""
  t = config.task
  f = config.base.answer_fraction
  return sum(n - round(f * n) for n in (t.math_train, t.qa_train))


def num_experts(config, pool: int | None = None) -> int:
  """Expert trajectories of the E3-TIR warm-up: `budget.expert_fraction`
  of the SFT set (the `pool` questions; `pool_size(config)` if None)."""
  full = pool_size(config) if pool is None else pool
  return max(1, round(config.budget.expert_fraction * full))


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks fields, types and ranges, then the cross-field rules.

  Raises:
    common.schema.ConfigError: naming the field, the value and what is
      allowed.
  """
  schema.validate(config, fields(), experiment='e3tir')
  e = config.e3tir
  # The shortest expert is a one-call arithmetic trace
  # `<calc> a op b </calc> <result> r </result> <answer> r </answer>`:
  # at least 7 expert-written tokens after the first.
  if e.num_anchors > 7:
    schema.fail(
      'e3tir.num_anchors',
      e.num_anchors,
      '<= 7 (anchor positions of the shortest expert trajectory)',
    )
  t = config.task
  if t.min_operands > t.max_operands:
    schema.fail(
      'task.min_operands',
      t.min_operands,
      f'<= task.max_operands={t.max_operands}',
    )
  if config.base.answer_fraction >= 1.0:
    schema.fail(
      'base.answer_fraction',
      config.base.answer_fraction,
      '[0, 1) (the rest of the training questions is the SFT / RL pool)',
    )
  if t.min_digits > t.max_digits:
    schema.fail(
      'task.min_digits', t.min_digits, f'<= task.max_digits={t.max_digits}'
    )
  if config.eval.num_math > config.task.math_test:
    schema.fail('eval.num_math', config.eval.num_math, '<= task.math_test')
  if config.eval.num_qa > config.task.qa_test:
    schema.fail('eval.num_qa', config.eval.num_qa, '<= task.qa_test')
  n = num_experts(config)
  if n < e.prompts_per_step:
    schema.fail(
      'budget.expert_fraction',
      config.budget.expert_fraction,
      f'a budget of >= e3tir.prompts_per_step={e.prompts_per_step} expert '
      f'trajectories (this gives {n})',
    )
