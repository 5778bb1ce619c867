"""PiCA token rewards: hazard step rewards at `</search>`, outcome at the end.

Step rewards for the k-th served search (0-indexed), from the hazard h_k
of `pica.hazard` (the end-of-response placeholder is not used, as in the
released code):

* `'pbrs'` (exact potential-based shaping, potential log S_t):
  F_k = coef * log(1 - h_k).
* `'linear'` (the released code, `Search-R1/verl/trainer/main_ppo.py`):
  F_k = coef * ((1 - h_k) - baseline - pen_k) with the over-search penalty
  pen_k = 0 for k < free, alpha * gamma ** (k - free + 1) after (PiCA:
  baseline 0.55, alpha 0.3, gamma 1.5, free 3, so 0.45 for the 4th search
  and 0.675 for the 5th). The shipped code adds `step_reward_scale` 0.3
  times a tensor it also writes in place, so its effective coefficient is
  1 + 0.3 = 1.3; here it is the explicit `coef`.

The reward of step k is placed on the last token of the k-th `</search>`;
the outcome `outcome_scale * score` on the last response token, where
score is the SQuAD token F1 (or EM) of the final answer, max over aliases,
or `format_penalty` (PiCA: -1) when `pica.protocol.parse_trajectory` finds
the format invalid; a trajectory with an invalid format gets no step
rewards (as in the released code).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import chex
import jax.numpy as jnp
import numpy as np

from common import rl
from common.rl import qa_rewards
from pica import protocol

STEP_FORMS = ('pbrs', 'linear')
METRICS = ('f1', 'em')


@dataclasses.dataclass(frozen=True)
class RewardConfig:
  """Reward settings; defaults are the released PiCA run's.

  Attributes:
    step_form: one of `STEP_FORMS`; None = outcome reward only
      (Search-R1 baseline).
    coef: step reward coefficient (effective 1.3 in the shipped code).
    baseline: b of the linear form.
    penalty_alpha, penalty_gamma, penalty_free: over-search penalty.
    outcome_scale: multiplier of the outcome score (1.5).
    metric: 'f1' (PiCA) or 'em' (Search-R1).
    format_penalty: score of a malformed trajectory (-1).
  """

  step_form: str | None = 'linear'
  coef: float = 1.3
  baseline: float = 0.55
  penalty_alpha: float = 0.3
  penalty_gamma: float = 1.5
  penalty_free: int = 3
  outcome_scale: float = 1.5
  metric: str = 'f1'
  format_penalty: float = -1.0

  def __post_init__(self):
    if self.step_form not in (None, *STEP_FORMS):
      raise ValueError(
        f'RewardConfig.step_form must be None or one of {STEP_FORMS}, got '
        f'{self.step_form!r}'
      )
    if self.metric not in METRICS:
      raise ValueError(
        f'RewardConfig.metric must be one of {METRICS}, got {self.metric!r}'
      )
    if self.penalty_free < 0:
      raise ValueError('RewardConfig.penalty_free must be >= 0')
    for name in (
      'coef',
      'baseline',
      'penalty_alpha',
      'penalty_gamma',
      'outcome_scale',
      'format_penalty',
    ):
      if not np.isfinite(getattr(self, name)):
        raise ValueError(f'RewardConfig.{name} must be finite')


def _assert_shapes(arrays, rank: int, message: str) -> None:
  """Shape contract (chex, static): equal shapes of `rank`."""
  chex.assert_rank(
    arrays, rank, custom_message=message, exception_type=rl.ShapeError
  )
  chex.assert_equal_shape(
    arrays, custom_message=message, exception_type=rl.ShapeError
  )


def over_search_penalty(
  num_steps: int, alpha: float = 0.3, gamma: float = 1.5, free: int = 3
) -> jnp.ndarray:
  """`[K]` penalty: 0 for k < free, alpha * gamma ** (k - free + 1)."""
  k = jnp.arange(num_steps)
  return jnp.where(k < free, 0.0, alpha * gamma ** (k - free + 1.0))


def step_rewards(hazard, valid, config: RewardConfig, eps: float = 1e-6):
  """Per-search step rewards `[B, K]` (0 where not `valid`).

  Args:
    hazard: `[B, K]` h_k in (0, 1) for the served searches.
    valid: `[B, K]` served searches (a prefix per row).
    config: a `RewardConfig` with a `step_form`.
    eps: h is clipped to [0, 1 - eps] in the log form.
  """
  h = jnp.asarray(hazard, jnp.float32)
  valid = jnp.asarray(valid, bool)
  _assert_shapes(
    [h, valid],
    2,
    f'hazard {h.shape} and valid {valid.shape} must both be [B, K]',
  )
  if config.step_form == 'pbrs':
    r = config.coef * jnp.log1p(-jnp.clip(h, 0.0, 1.0 - eps))
  elif config.step_form == 'linear':
    pen = over_search_penalty(
      h.shape[1],
      config.penalty_alpha,
      config.penalty_gamma,
      config.penalty_free,
    )
    r = config.coef * ((1.0 - h) - config.baseline - pen[None, :])
  else:
    raise ValueError('step_rewards needs RewardConfig.step_form set')
  return jnp.where(valid, r, 0.0)


def outcome_scores(
  texts: Sequence[str],
  golden_answers: Sequence[Sequence[str]],
  config: RewardConfig,
) -> tuple[np.ndarray, np.ndarray]:
  """Outcome score and format validity per response.

  Returns:
    `(score [B] float32, format_ok [B] bool)`: score is F1/EM of the final
    answer against the aliases, or `format_penalty` for a malformed
    response (unscaled; `token_rewards` applies `outcome_scale`).
  """
  if len(texts) != len(golden_answers):
    raise ValueError(
      f'{len(texts)} responses but {len(golden_answers)} golden answer lists'
    )
  score_fn = (
    qa_rewards.token_f1 if config.metric == 'f1' else qa_rewards.exact_match
  )
  scores = np.zeros(len(texts), np.float32)
  ok = np.zeros(len(texts), bool)
  for i, (text, gold) in enumerate(zip(texts, golden_answers, strict=True)):
    parsed = protocol.parse_trajectory(text)
    ok[i] = parsed.format_ok
    scores[i] = (
      score_fn(parsed.answer, gold)
      if parsed.format_ok
      else config.format_penalty
    )
  return scores, ok


def token_rewards(
  outcome,
  format_ok,
  response_mask,
  search_ends=None,
  step_reward=None,
  config: RewardConfig | None = None,
) -> jnp.ndarray:
  """Places the rewards on response tokens.

  Args:
    outcome: `[B]` unscaled outcome scores (`outcome_scores`).
    format_ok: `[B]` bool; malformed rows get no step rewards.
    response_mask: `[B, R]` real response tokens (right-padded).
    search_ends: `[B, K]` token index of each served `</search>` (-1 pad).
    step_reward: `[B, K]` step rewards (`step_rewards`), or None.
    config: supplies `outcome_scale`.

  Returns:
    `[B, R]` float32 token rewards.
  """
  config = config or RewardConfig()
  mask = jnp.asarray(response_mask, bool)
  outcome = jnp.asarray(outcome, jnp.float32)
  format_ok = jnp.asarray(format_ok, bool)
  _assert_shapes([mask], 2, f'response_mask {mask.shape} must be [B, R]')
  _assert_shapes(
    [outcome, format_ok],
    1,
    f'outcome {outcome.shape} and format_ok {format_ok.shape} must be [B]',
  )
  chex.assert_equal_shape_prefix(
    [outcome, mask],
    1,
    custom_message=f'outcome {outcome.shape} and response_mask {mask.shape} '
    'disagree on B',
    exception_type=rl.ShapeError,
  )
  b, r = mask.shape
  t = jnp.arange(r)
  last = jnp.max(jnp.where(mask, t, -1), axis=1)
  out = jnp.where(
    (t[None, :] == last[:, None]) & (last[:, None] >= 0),
    config.outcome_scale * outcome[:, None],
    0.0,
  )
  if step_reward is None:
    return out
  ends = jnp.asarray(search_ends)
  step = jnp.asarray(step_reward, jnp.float32)
  msg = (
    f'search_ends {ends.shape} and step_reward {step.shape} must be [B={b}, K]'
  )
  _assert_shapes([ends, step], 2, msg)
  chex.assert_equal_shape_prefix(
    [ends, mask], 1, custom_message=msg, exception_type=rl.ShapeError
  )
  use = (ends >= 0) & format_ok[:, None]
  hit = (ends[:, :, None] == t[None, None, :]) & use[:, :, None]  # [B,K,R]
  return out + jnp.sum(jnp.where(hit, step[:, :, None], 0.0), axis=1)
