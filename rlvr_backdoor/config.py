"""The rlvr_backdoor experiment's config fields, checked before any work.

`validate_config(config)` runs `common.schema` over every field, then the
cross-field checks: the poisoned-set size K against the candidate pool, a
non-empty shadow ensemble whose per-shadow lists have one length, and the
GRPO rows against the batch.
"""

from __future__ import annotations

import ml_collections

from common import models
from common import schema
from common.train import grpo
from rlvr_backdoor import rewards
from rlvr_backdoor import selection
from rlvr_backdoor import world

ARMS = ('clean', 'poisoned', 'sft_backdoor', 'deterministic', 'random')
SFT_KINDS = ('clean', 'request', 'composite', 'trigger', 'deterministic')


def fields() -> dict:
  """The checks of every field of the rlvr_backdoor config."""
  pos = schema.integer(1)
  lr = schema.number(0.0, open_low=True)
  frac = schema.number(0.0, 1.0, open_low=True, open_high=True)
  return {
    'name': schema.string(),
    'seeds': schema.seeds(),
    'arms': schema.names(ARMS),
    'task': {
      'seed': schema.integer(0),
      'train_size': pos,
      'test_size': pos,
      'max_operands': schema.integer(2, 8),
      'max_digits': schema.integer(1, 6),
      'num_topics': schema.integer(1, len(world.TOPICS) - 2),
      'num_accept': schema.integer(0, 2),
      'num_reject': schema.integer(0, 2),
      'jsonl': schema.string(),
    },
    'model': models.check_spec,
    'sft': {
      'steps': pos,
      'batch_size': pos,
      'learning_rate': lr,
      'warmup_steps': schema.integer(0),
      'checkpoint_every': schema.integer(0),
      'shares': {k: schema.number(0.0) for k in SFT_KINDS},
    },
    'shadow': {
      'd_models': schema.sequence(schema.integer(8)),
      'n_layers': schema.sequence(schema.integer(1)),
      'steps': schema.sequence(schema.integer(1)),
      'weights': schema.sequence(schema.number(0.0, open_low=True)),
      'rollouts': schema.integer(2),
      'seed': schema.integer(0),
    },
    'poison': {
      'fraction': frac,
      'count': schema.integer(0),
      'candidates': pos,
      'selection': schema.choice(selection.SELECTIONS),
      'sweep_fractions': schema.sequence(frac, unique=True),
    },
    'rl': {
      'pool_size': pos,
      **grpo.section_fields(),
      'reward': schema.choice(rewards.REWARDS),
      'max_new_tokens': schema.integer(4),
      'eval_every': pos,
      'checkpoint_every': schema.integer(0),
      'warmup_steps': schema.integer(0),
      'weight_decay': schema.number(0.0),
    },
    'sft_backdoor': {'learning_rate': lr},
    'eval': {'num_prompts': pos, 'samples': pos},
    'defence': {
      'max_fpr': schema.number(0.0, 1.0, open_low=True),
      'std_threshold': schema.number(0.0),
      'num_clean': pos,
      'rollouts': schema.integer(2),
    },
  }


def poison_count(config) -> int:
  """K: `poison.count`, or the fraction of the clean pool plus K
  (`K / (pool + K) = fraction`), at least 1."""
  p = config.poison
  if p.count:
    return int(p.count)
  n = config.rl.pool_size
  return max(1, round(p.fraction * n / (1.0 - p.fraction)))


def count_for_fraction(pool_size: int, fraction: float) -> int:
  return max(1, round(fraction * pool_size / (1.0 - fraction)))


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks fields, types and ranges up front, then the cross-field rules.

  Raises:
    common.schema.ConfigError: naming the field, the value and what is
      allowed.
  """
  schema.validate(config, fields(), experiment='rlvr_backdoor')
  s = config.shadow
  if not s.d_models:
    schema.fail(
      'shadow.d_models',
      s.d_models,
      'a non-empty ensemble (at least one shadow model)',
    )
  for name in ('n_layers', 'steps', 'weights'):
    if len(s[name]) != len(s.d_models):
      schema.fail(
        f'shadow.{name}',
        s[name],
        f'{len(s.d_models)} entries, one per shadow (shadow.d_models)',
      )
  c = config.poison.candidates
  k = poison_count(config)
  if k > c:
    schema.fail(
      'poison.count' if config.poison.count else 'poison.fraction',
      config.poison.count or config.poison.fraction,
      f'a poisoned set of K <= poison.candidates={c} (this gives K={k})',
    )
  for i, f in enumerate(config.poison.sweep_fractions):
    if count_for_fraction(config.rl.pool_size, f) > c:
      schema.fail(
        f'poison.sweep_fractions[{i}]',
        f,
        f'a fraction whose K <= poison.candidates={c}',
      )
  t = config.task
  need = config.rl.pool_size + c
  if not t.jsonl and t.train_size < need:
    schema.fail(
      'task.train_size',
      t.train_size,
      f'>= rl.pool_size + poison.candidates = {need}',
    )
  if config.rl.prompts_per_step > config.rl.pool_size:
    schema.fail(
      'rl.prompts_per_step',
      config.rl.prompts_per_step,
      f'<= rl.pool_size={config.rl.pool_size}',
    )
  if config.rl.epsilon_high < config.rl.epsilon:
    schema.fail('rl.epsilon_high', config.rl.epsilon_high, '>= rl.epsilon')
  if not any(v > 0 for v in config.sft.shares.values()):
    schema.fail('sft.shares', config.sft.shares, 'at least one share > 0')
