"""RL maths as pure array functions: log-probs, advantages, losses, KL.

Every function works on `[B, T]` arrays with masks, is jit- and vmap-able
and is tested against hand-computed values. Shape contracts are chex
asserts at the boundary (static, so free under jit): a `[T]` array where
`[B, T]` is promised, or a mask of another shape, raises `ShapeError` (chex's
`AssertionError`, also a `ValueError`) naming the argument. Names follow
TRL/Tunix (`beta`, `num_generations`, `epsilon`, `epsilon_high`,
`loss_agg_mode`).
See README.md in this directory for the formulas.
"""

from common.rl._checks import ShapeError
from common.rl.advantages import SCALE_REWARDS
from common.rl.advantages import TURN_NORM_MODES
from common.rl.advantages import broadcast_to_tokens
from common.rl.advantages import dr_grpo_advantages
from common.rl.advantages import gae_advantages
from common.rl.advantages import group_advantages
from common.rl.advantages import group_normalize
from common.rl.advantages import masked_mean
from common.rl.advantages import masked_var
from common.rl.advantages import rloo_advantages
from common.rl.advantages import turn_level_advantages
from common.rl.advantages import whiten
from common.rl.kl import KL_ESTIMATORS
from common.rl.kl import KLController
from common.rl.kl import KLControllerState
from common.rl.kl import adaptive_kl_controller
from common.rl.kl import apply_kl_penalty
from common.rl.kl import fixed_kl_controller
from common.rl.kl import kl_divergence
from common.rl.logprobs import entropy
from common.rl.logprobs import next_token_entropy
from common.rl.logprobs import next_token_logprobs
from common.rl.logprobs import sequence_logprob
from common.rl.logprobs import shift_for_next_token
from common.rl.logprobs import token_logprobs
from common.rl.losses import IMPORTANCE_SAMPLING_LEVELS
from common.rl.losses import LOSS_AGG_MODES
from common.rl.losses import aggregate_loss
from common.rl.losses import clipped_value_loss
from common.rl.losses import ppo_policy_loss
from common.rl.policy_loss import OPTIONAL_BATCH_KEYS
from common.rl.policy_loss import REQUIRED_BATCH_KEYS
from common.rl.policy_loss import PolicyLossConfig
from common.rl.policy_loss import make_policy_loss
from common.rl.preference import LOSS_TYPES as PREFERENCE_LOSS_TYPES
from common.rl.preference import PairLogprobs
from common.rl.preference import concatenated_sequence_logprobs
from common.rl.preference import dpo_loss
from common.rl.preference import implicit_rewards
from common.rl.preference import preference_logits
from common.rl.preference import preference_metrics
from common.rl.preference import spin_loss

__all__ = [
  'IMPORTANCE_SAMPLING_LEVELS',
  'KL_ESTIMATORS',
  'KLController',
  'KLControllerState',
  'LOSS_AGG_MODES',
  'OPTIONAL_BATCH_KEYS',
  'PairLogprobs',
  'PolicyLossConfig',
  'PREFERENCE_LOSS_TYPES',
  'REQUIRED_BATCH_KEYS',
  'SCALE_REWARDS',
  'ShapeError',
  'TURN_NORM_MODES',
  'adaptive_kl_controller',
  'aggregate_loss',
  'apply_kl_penalty',
  'broadcast_to_tokens',
  'clipped_value_loss',
  'concatenated_sequence_logprobs',
  'dpo_loss',
  'dr_grpo_advantages',
  'entropy',
  'fixed_kl_controller',
  'gae_advantages',
  'group_advantages',
  'group_normalize',
  'implicit_rewards',
  'kl_divergence',
  'make_policy_loss',
  'masked_mean',
  'masked_var',
  'next_token_entropy',
  'next_token_logprobs',
  'ppo_policy_loss',
  'preference_logits',
  'preference_metrics',
  'rloo_advantages',
  'sequence_logprob',
  'shift_for_next_token',
  'spin_loss',
  'token_logprobs',
  'turn_level_advantages',
  'whiten',
]
