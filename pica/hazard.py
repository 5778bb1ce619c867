"""The PiCA hazard reward model and its conditional-reward-model (CRM) loss.

A step-level reward model: the project's decoder LM (`common.models`) with
a bias-free scalar head on the final hidden state, read at a placeholder
token inserted right after each served search's `</search>` (before the
retrieved documents, so step t's state is the question, the earlier steps
with their information, and the t-th query) and once more at the end of
the response. With v_t the head's value at the t-th placeholder the hazard
is h_t = sigmoid(v_t) = P(z = t | z >= t, history), the survival
S_t = prod_{k<=t} (1 - h_k).

CRM loss (PiCA `OpenRLHF/openrlhf/models/loss.py`, `TACRMLoss`; CRM, Zhang
et al. 2025), over the valid placeholders P of a trajectory; a trajectory
is negative iff its last label is '-', and z is its first '-':

  positive:  L_S = -sum_{t in P} log(1 - h_t)
  negative:  L_W = -log(max(1 - prod_{t in P} (1 - h_t), eps))
             L_z = -[log h_z + sum_{t < z} log(1 - h_t)]
  monotonicity, margin m, over consecutive *placeholders* (t, t+1):
    positive: sum relu(h_{t+1} - h_t + m)      (hazard must not rise)
    negative: sum_{t >= z} relu(h_t - h_{t+1} + m)  (nor fall after z)
  total: positive L_S + w_mono * mono; negative w_neg * (L_W + L_z +
  w_mono * mono); averaged over trajectories with >= 1 valid step.

Deviation from the released code: its pair masks pair a placeholder with
the adjacent *token*, so the positive term is almost always empty and the
negative term compares a placeholder with the token after it; here pairs
are consecutive placeholders, as the loss intends. log(1 - h) and log h
are computed as log_sigmoid(-v) and log_sigmoid(v) (stable).
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common import rl
from common import stats
from common.models import Transformer


class HazardModel(nnx.Module):
  """Decoder LM backbone + bias-free linear head `D -> 1`.

  The head is initialised N(0, std = 1 / (D + 1)) as in PiCA's
  `_get_reward_model`.
  """

  def __init__(self, backbone: Transformer, *, rngs: nnx.Rngs):
    """Wraps `backbone` (e.g. a copy of the SFT policy)."""
    d = backbone.config.d_model
    self.backbone = backbone
    self.head = nnx.Linear(
      d,
      1,
      use_bias=False,
      kernel_init=nnx.initializers.normal(stddev=1.0 / (d + 1)),
      rngs=rngs,
    )

  def __call__(self, tokens, attention_mask=None) -> jax.Array:
    """Per-token values `[B, T]` float32 for tokens `[B, T]`."""
    hidden = self.backbone(tokens, attention_mask=attention_mask).hidden
    return self.head(hidden)[..., 0].astype(jnp.float32)

  def step_logits(self, tokens, attention_mask, positions) -> jax.Array:
    """v at the placeholder `positions` `[B, S]` (int) -> `[B, S]`."""
    values = self(tokens, attention_mask)
    return jnp.take_along_axis(values, jnp.maximum(positions, 0), axis=1)


class HazardInputs(NamedTuple):
  """Hazard-model inputs built from a rollout.

  Attributes:
    tokens: `[B, P + R + S]` int32, prompt + response with placeholders.
    mask: `[B, P + R + S]` bool.
    positions: `[B, S]` int32 placeholder indices (0 where invalid).
    valid: `[B, S]` bool; row i has `num_searches[i] + 1` valid steps.
  """

  tokens: np.ndarray
  mask: np.ndarray
  positions: np.ndarray
  valid: np.ndarray


def insert_placeholders(
  prompt_tokens,
  prompt_mask,
  tokens,
  response_mask,
  search_ends,
  placeholder_id: int,
  pad_id: int = 0,
  replace_id: int | None = None,
) -> HazardInputs:
  """Inserts a placeholder after each served `</search>` and at the end.

  Args:
    prompt_tokens: `[B, P]` (left-padded), `prompt_mask` `[B, P]`.
    tokens: `[B, R]` responses (right-padded), `response_mask` `[B, R]`.
    search_ends: `[B, K]` response index of each served `</search>`, valid
      entries first, -1 after (`pica.rollout.Rollout.search_ends`).
    placeholder_id: the placeholder token id (unused elsewhere).
    pad_id: padding id.
    replace_id: if given, response tokens equal to `placeholder_id` (a
      sampling policy can emit any id) are replaced by it (e.g. `<unk>`);
      if None they raise.

  Returns:
    `HazardInputs` with S = K + 1 steps; step k < num_searches is search k,
    step num_searches is the end of the response.
  """
  prompt_tokens = np.asarray(prompt_tokens)
  prompt_mask = np.asarray(prompt_mask, bool)
  tokens, response_mask = np.asarray(tokens), np.asarray(response_mask, bool)
  search_ends = np.asarray(search_ends)
  b, p = prompt_tokens.shape
  r, k = tokens.shape[1], search_ends.shape[1]
  clash = response_mask & (tokens == placeholder_id)
  if replace_id is not None:
    tokens = np.where(clash, replace_id, tokens)
  elif clash.any():
    raise ValueError(
      f'placeholder id {placeholder_id} occurs in a response; pick a token '
      'the policy never emits'
    )
  width = p + r + k + 1
  out = np.full((b, width), pad_id, np.int32)
  mask = np.zeros((b, width), bool)
  positions = np.zeros((b, k + 1), np.int32)
  valid = np.zeros((b, k + 1), bool)
  out[:, :p], mask[:, :p] = prompt_tokens, prompt_mask
  for i in range(b):
    n = int(response_mask[i].sum())
    ends = [int(e) for e in search_ends[i] if e >= 0]
    if any(e >= n for e in ends) or ends != sorted(set(ends)):
      raise ValueError(
        f'search_ends row {i} must increase and lie within the response'
      )
    row, pos, start = [], [], 0
    for e in ends + [n - 1]:
      row += tokens[i, start : e + 1].tolist()
      pos.append(p + len(row))
      row.append(placeholder_id)
      start = e + 1
    out[i, p : p + len(row)] = row
    mask[i, p : p + len(row)] = True
    positions[i, : len(pos)] = pos
    valid[i, : len(pos)] = True
  return HazardInputs(out, mask, positions, valid)


def first_error(labels, valid) -> jax.Array:
  """z `[B]`: index of the first valid '-' step, or S if none."""
  bad = jnp.asarray(valid, bool) & ~jnp.asarray(labels, bool)
  s = bad.shape[1]
  return jnp.min(jnp.where(bad, jnp.arange(s), s), axis=1)


def is_negative(labels, valid) -> jax.Array:
  """`[B]` bool: the last valid label is '-' (PiCA's negative sample)."""
  valid = jnp.asarray(valid, bool)
  n = jnp.sum(valid, axis=1)
  last = jnp.take_along_axis(
    jnp.asarray(labels, bool), jnp.maximum(n - 1, 0)[:, None], axis=1
  )[:, 0]
  return (n > 0) & ~last


def crm_terms(
  logits, labels, valid, margin: float = 0.05, eps: float = 1e-5
) -> dict[str, jax.Array]:
  """The CRM loss terms per trajectory (module docstring).

  Args:
    logits: `[B, S]` head values v_t at the placeholders.
    labels: `[B, S]` bool, True = '+'.
    valid: `[B, S]` bool, valid steps first.
    margin: monotonicity margin m.
    eps: clamp of 1 - S in L_W.

  Returns:
    `{'survival' L_S, 'failure' L_W, 'first_error' L_z, 'mono_pos',
    'mono_neg', 'negative' (bool), 'z'}`, each `[B]`. L_S / mono_pos are
    computed for every row, L_W / L_z / mono_neg too (the loss picks by
    `negative`).
  """
  v = jnp.asarray(logits, jnp.float32)
  chex.assert_rank(
    v,
    2,
    custom_message=f'logits must be [B, S], got shape {v.shape}',
    exception_type=rl.ShapeError,
  )
  valid = jnp.asarray(valid, bool)
  labels = jnp.asarray(labels, bool)
  chex.assert_equal_shape(
    [v, labels, valid],
    custom_message=f'logits {v.shape}, labels {labels.shape} and valid '
    f'{valid.shape} must have the same [B, S] shape',
    exception_type=rl.ShapeError,
  )
  s = v.shape[1]
  t = jnp.arange(s)
  log_surv = jnp.where(valid, jax.nn.log_sigmoid(-v), 0.0)  # log(1 - h)
  log_haz = jax.nn.log_sigmoid(v)  # log h
  h = jax.nn.sigmoid(v)
  z = first_error(labels, valid)
  survival = -jnp.sum(log_surv, axis=1)
  log_s_total = jnp.sum(log_surv, axis=1)
  failure = -jnp.log(jnp.maximum(-jnp.expm1(log_s_total), eps))
  before_z = t[None, :] < z[:, None]
  at_z = jnp.take_along_axis(log_haz, jnp.minimum(z, s - 1)[:, None], 1)[:, 0]
  first = -(at_z + jnp.sum(jnp.where(before_z, log_surv, 0.0), axis=1))
  pair = valid[:, :-1] & valid[:, 1:]
  rise = jax.nn.relu(h[:, 1:] - h[:, :-1] + margin)
  fall = jax.nn.relu(h[:, :-1] - h[:, 1:] + margin)
  mono_pos = jnp.sum(jnp.where(pair, rise, 0.0), axis=1)
  after_z = t[None, :-1] >= z[:, None]
  mono_neg = jnp.sum(jnp.where(pair & after_z, fall, 0.0), axis=1)
  return {
    'survival': survival,
    'failure': failure,
    'first_error': first,
    'mono_pos': mono_pos,
    'mono_neg': mono_neg,
    'negative': is_negative(labels, valid),
    'z': z,
  }


def crm_loss(
  logits,
  labels,
  valid,
  neg_weight: float = 1.0,
  mono_weight: float = 1.0,
  margin: float = 0.05,
  eps: float = 1e-5,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The PiCA (TACRM) loss, mean over trajectories with a valid step.

  Args:
    logits, labels, valid: as in `crm_terms`.
    neg_weight: w_neg (PiCA 1.0).
    mono_weight: w_mono (PiCA 1.0; 0 gives the plain CRM loss).
    margin: m (PiCA 0.05).
    eps: L_W clamp (PiCA 1e-5).

  Returns:
    `(loss, metrics)`: metrics `crm_pos`, `crm_neg` (mean per-sample loss
    of each kind), `step_accuracy` (fraction of valid labelled steps with
    h < 0.5 on '+' and h > 0.5 on '-', steps after z excluded),
    `neg_fraction`.
  """
  terms = crm_terms(logits, labels, valid, margin, eps)
  valid = jnp.asarray(valid, bool)
  labels = jnp.asarray(labels, bool)
  neg = terms['negative']
  pos_loss = terms['survival'] + mono_weight * terms['mono_pos']
  neg_loss = neg_weight * (
    terms['failure'] + terms['first_error'] + mono_weight * terms['mono_neg']
  )
  per = jnp.where(neg, neg_loss, pos_loss)
  has = jnp.any(valid, axis=1)
  count = jnp.maximum(jnp.sum(has), 1)
  loss = jnp.sum(jnp.where(has, per, 0.0)) / count
  h = jax.nn.sigmoid(jnp.asarray(logits, jnp.float32))
  t = jnp.arange(valid.shape[1])
  scored = valid & (t[None, :] <= terms['z'][:, None])
  right = jnp.where(labels, h < 0.5, h > 0.5) & scored
  n_pos = jnp.maximum(jnp.sum(has & ~neg), 1)
  n_neg = jnp.maximum(jnp.sum(has & neg), 1)
  return loss, {
    'crm_pos': jnp.sum(jnp.where(has & ~neg, per, 0.0)) / n_pos,
    'crm_neg': jnp.sum(jnp.where(has & neg, per, 0.0)) / n_neg,
    'step_accuracy': jnp.sum(right) / jnp.maximum(jnp.sum(scored), 1),
    'neg_fraction': jnp.sum(has & neg) / count,
  }


def make_hazard_loss(graphdef, **loss_kwargs):
  """`loss_fn(params, batch, rng) -> (loss, metrics)` for
  `common.train.make_train_step(..., has_aux=True)`.

  `batch`: `{'tokens', 'mask', 'positions', 'valid', 'labels'}` as built
  by `insert_placeholders` and `pica.pivots.label_arrays`.
  """

  def loss_fn(params, batch, rng=None):
    del rng
    model = nnx.merge(graphdef, params)
    v = model.step_logits(batch['tokens'], batch['mask'], batch['positions'])
    return crm_loss(v, batch['labels'], batch['valid'], **loss_kwargs)

  return loss_fn


def step_kinds(valid) -> tuple[np.ndarray, np.ndarray]:
  """`(search [B, S], end [B, S])` bool masks of the valid steps.

  Step k of a row with n valid steps is a served search for k < n - 1 and
  the end of the response at k = n - 1 (`insert_placeholders`' layout).
  """
  valid = np.asarray(valid, bool)
  n = valid.sum(axis=1, keepdims=True)
  k = np.arange(valid.shape[1])[None, :]
  return valid & (k < n - 1), valid & (k == n - 1)


def heldout_aucs(hazards, labels, valid) -> dict[str, float]:
  """Ranking AUC of the hazard for '-' vs '+' steps, by step kind.

  The probability that a '-' step gets a higher hazard than a '+' step
  (ties one half; `common.stats.roc_curve`), over the served searches
  (`search_auc`) and over the end steps (`end_auc`). 0.5 is chance. NaN
  where a kind has no step of one class.

  Args:
    hazards: `[B, S]` h at each placeholder.
    labels: `[B, S]` bool, True = '+' (`pica.pivots.label_arrays`).
    valid: `[B, S]` bool, valid steps first.

  Returns:
    `{'search_auc', 'end_auc'}` floats.
  """
  h = np.asarray(hazards, np.float64)
  neg = ~np.asarray(labels, bool)
  if h.shape != neg.shape or h.shape != np.shape(valid):
    raise ValueError(
      f'hazards {h.shape}, labels {neg.shape} and valid {np.shape(valid)} '
      'must have the same [B, S] shape'
    )
  out = {}
  kinds = zip(('search_auc', 'end_auc'), step_kinds(valid), strict=True)
  for name, kind in kinds:
    y = neg[kind]
    if y.all() or not y.any():
      out[name] = float('nan')
    else:
      out[name] = stats.roc_curve(h[kind], y).auc
  return out


def oracle_hazards(
  labels, valid, low: float = 0.05, high: float = 0.95
) -> np.ndarray:
  """`[B, S]` hazards from the pivot labels: `low` on '+', `high` on '-'.

  The oracle arm's step rewards (an upper bound on what a hazard model
  trained on these labels can give); 0 at invalid steps.
  """
  labels = np.asarray(labels, bool)
  valid = np.asarray(valid, bool)
  return np.where(valid, np.where(labels, low, high), 0.0).astype(np.float32)


SCORE_AT = ('query', 'information')


def information_ends(search_ends, loss_mask, response_mask) -> np.ndarray:
  """`[B, K]` response index of the last observation token of each search.

  The observation of search k (`<information> ... </information>`) is the
  run of response tokens right after `search_ends[k]` that the policy did
  not generate (`loss_mask` False). Scoring the hazard there instead of at
  `</search>` lets the model see what the search retrieved (a documented
  deviation: PiCA scores the state right after the query). A search whose
  observation is empty (cut at the end of the response) keeps its
  `</search>` index.

  Args:
    search_ends: `[B, K]` int, valid entries first, -1 after.
    loss_mask: `[B, R]` bool, generated tokens.
    response_mask: `[B, R]` bool, real response tokens.

  Returns:
    `[B, K]` int32, -1 where `search_ends` is -1.
  """
  ends = np.asarray(search_ends)
  gen = np.asarray(loss_mask, bool)
  real = np.asarray(response_mask, bool)
  observed = real & ~gen
  out = np.full(ends.shape, -1, np.int32)
  r = gen.shape[1]
  for i, j in zip(*np.nonzero(ends >= 0), strict=True):
    t = int(ends[i, j])
    while t + 1 < r and observed[i, t + 1]:
      t += 1
    out[i, j] = t
  return out


def step_ends(score_at: str, search_ends, loss_mask, response_mask):
  """Where each search step is scored: `</search>` or its observation's end."""
  if score_at not in SCORE_AT:
    raise ValueError(f'score_at must be one of {SCORE_AT}; got {score_at!r}')
  if score_at == 'query':
    return np.asarray(search_ends)
  return information_ends(search_ends, loss_mask, response_mask)
