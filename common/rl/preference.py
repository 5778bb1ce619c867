"""Pairwise preference losses over sequence log-probs: DPO, IPO, hinge, SPIN.

Every loss is a pure function of per-sequence log-probs `[B]` (the sum, or
for length-normalised variants the mean, of the completion's token
log-probs) of the policy and of a frozen reference, for a chosen response
`y_w` and a rejected one `y_l`. With

  h = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))

the per-example losses follow TRL's `DPOTrainer` (`loss_type`):

* `'sigmoid'` (DPO; with `label_smoothing` eps the conservative cDPO):
  `-(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)`;
* `'ipo'`: `(h - 1 / (2 beta))^2` (TRL averages the log-probs over the
  completion for IPO: pass `average=True` log-probs, see
  `concatenated_sequence_logprobs`);
* `'hinge'` (SLiC): `max(0, 1 - beta h)`;
* `'sigmoid_norm'` (length-normalised DPO): `'sigmoid'` on each log-prob
  divided by its completion length (`chosen_lengths`, `rejected_lengths`).

Label smoothing is defined for the sigmoid losses only; a nonzero value with
`'ipo'` or `'hinge'` raises instead of being ignored. `beta` and
`label_smoothing` may be traced (hyperparameters are traced values); their
range is checked when they are concrete.

The implicit reward of a response is `beta (log pi(y) - log ref(y))`;
`preference_metrics` reports their means, the reward accuracy (fraction
with chosen reward > rejected reward) and the margin, under TRL's names.

SPIN (Chen et al. 2024) is the sigmoid loss with the SFT target as chosen,
the policy's own sample as rejected and the previous iterate as reference
(`spin_loss`).
"""

from collections.abc import Callable
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from common.rl import _checks
from common.rl import logprobs as logprobs_lib

LOSS_TYPES = ('sigmoid', 'ipo', 'hinge', 'sigmoid_norm')
SMOOTHED_LOSS_TYPES = ('sigmoid', 'sigmoid_norm')


def _check_vectors(names, arrays) -> None:
  for name, x in zip(names, arrays, strict=True):
    _checks.check_rank(name, x, 1, '[B]')
  _checks.check_same_shape(names, arrays)


def _concrete_float(x) -> float | None:
  if isinstance(x, jax.core.Tracer):
    return None
  return float(np.asarray(x))


def _check_hyper(beta, label_smoothing, loss_type) -> None:
  _checks.check_choice('loss_type', loss_type, LOSS_TYPES)
  b = _concrete_float(beta)
  if b is not None and not (np.isfinite(b) and b > 0):
    raise ValueError(f'beta must be a finite number > 0; got {b}.')
  eps = _concrete_float(label_smoothing)
  if eps is not None:
    if not 0.0 <= eps <= 0.5:
      raise ValueError(f'label_smoothing must be in [0, 0.5]; got {eps}.')
    if eps != 0.0 and loss_type not in SMOOTHED_LOSS_TYPES:
      raise ValueError(
        f'label_smoothing={eps} is defined only for loss_type in '
        f'{SMOOTHED_LOSS_TYPES}; got loss_type={loss_type!r}.'
      )


def implicit_rewards(
  policy_logps: jax.Array, reference_logps: jax.Array, beta
) -> jax.Array:
  """DPO implicit reward `beta * (log pi(y|x) - log ref(y|x))`.

  Args:
    policy_logps: `[B]` sequence log-probs under the policy.
    reference_logps: `[B]` the same sequences under the reference.
    beta: inverse temperature (scalar, may be traced).

  Returns:
    `[B]` float32 rewards.
  """
  _check_vectors(
    ['policy_logps', 'reference_logps'], [policy_logps, reference_logps]
  )
  return beta * (
    jnp.asarray(policy_logps, jnp.float32)
    - jnp.asarray(reference_logps, jnp.float32)
  )


def preference_logits(
  policy_chosen_logps: jax.Array,
  policy_rejected_logps: jax.Array,
  reference_chosen_logps: jax.Array,
  reference_rejected_logps: jax.Array,
) -> jax.Array:
  """The log-ratio difference `h` (before `beta`), `[B]` float32.

  `h = (pi_w - ref_w) - (pi_l - ref_l)`; all inputs `[B]`.
  """
  names = [
    'policy_chosen_logps',
    'policy_rejected_logps',
    'reference_chosen_logps',
    'reference_rejected_logps',
  ]
  arrays = [
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
  ]
  _check_vectors(names, arrays)
  pw, pl, rw, rl = (jnp.asarray(a, jnp.float32) for a in arrays)
  return (pw - rw) - (pl - rl)


def _normalise(logps, lengths, name):
  if lengths is None:
    raise ValueError(
      f"loss_type='sigmoid_norm' needs {name} (completion lengths [B])."
    )
  _check_vectors(['logps', name], [logps, lengths])
  if _checks.is_concrete(lengths) and np.any(np.asarray(lengths) <= 0):
    raise ValueError(f'{name} must be > 0; got {np.asarray(lengths)}.')
  return jnp.asarray(logps, jnp.float32) / jnp.asarray(lengths, jnp.float32)


def dpo_loss(
  policy_chosen_logps: jax.Array,
  policy_rejected_logps: jax.Array,
  reference_chosen_logps: jax.Array,
  reference_rejected_logps: jax.Array,
  beta=0.1,
  label_smoothing=0.0,
  loss_type: str = 'sigmoid',
  chosen_lengths: jax.Array | None = None,
  rejected_lengths: jax.Array | None = None,
) -> jax.Array:
  """Per-example pairwise preference loss (see the module docstring).

  Args:
    policy_chosen_logps: `[B]` log pi(y_w|x).
    policy_rejected_logps: `[B]` log pi(y_l|x).
    reference_chosen_logps: `[B]` log ref(y_w|x) (no gradient is stopped
      here: pass constants).
    reference_rejected_logps: `[B]` log ref(y_l|x).
    beta: inverse temperature > 0 (IPO: the regulariser tau).
    label_smoothing: eps in `[0, 0.5]`, the assumed label-flip probability
      (sigmoid losses only).
    loss_type: one of `LOSS_TYPES`.
    chosen_lengths: `[B]` completion lengths of y_w (`'sigmoid_norm'`).
    rejected_lengths: `[B]` completion lengths of y_l (`'sigmoid_norm'`).

  Returns:
    `[B]` float32 losses (average them for the batch loss).
  """
  _check_hyper(beta, label_smoothing, loss_type)
  logps = [
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
  ]
  if loss_type == 'sigmoid_norm':
    lengths = [chosen_lengths, rejected_lengths] * 2
    names = ['chosen_lengths', 'rejected_lengths'] * 2
    logps = [
      _normalise(lp, n, name)
      for lp, n, name in zip(logps, lengths, names, strict=True)
    ]
  h = preference_logits(*logps)
  if loss_type in SMOOTHED_LOSS_TYPES:
    eps = label_smoothing
    return -(1.0 - eps) * jax.nn.log_sigmoid(
      beta * h
    ) - eps * jax.nn.log_sigmoid(-beta * h)
  if loss_type == 'ipo':
    return (h - 1.0 / (2.0 * beta)) ** 2
  return jax.nn.relu(1.0 - beta * h)  # hinge


def spin_loss(
  policy_target_logps: jax.Array,
  policy_generated_logps: jax.Array,
  previous_target_logps: jax.Array,
  previous_generated_logps: jax.Array,
  beta=0.1,
  label_smoothing=0.0,
  loss_type: str = 'sigmoid',
) -> jax.Array:
  """SPIN's self-play loss, `[B]`: DPO with the previous iterate as reference.

  `l(beta (log pi(y)/pi_t(y) - log pi(y')/pi_t(y')))` with `y` the SFT
  target, `y'` the previous iterate's own sample and `l` the logistic loss
  `log(1 + e^{-z})` (`loss_type='sigmoid'`, SPIN's default, lambda =
  `beta` = 0.1).

  Args:
    policy_target_logps: `[B]` log pi_theta(y|x).
    policy_generated_logps: `[B]` log pi_theta(y'|x).
    previous_target_logps: `[B]` log pi_t(y|x), the previous iterate.
    previous_generated_logps: `[B]` log pi_t(y'|x).
    beta: SPIN's lambda.
    label_smoothing: see `dpo_loss`.
    loss_type: see `dpo_loss` (`'sigmoid_norm'` needs lengths: use
      `dpo_loss` directly).

  Returns:
    `[B]` float32 losses.
  """
  return dpo_loss(
    policy_target_logps,
    policy_generated_logps,
    previous_target_logps,
    previous_generated_logps,
    beta=beta,
    label_smoothing=label_smoothing,
    loss_type=loss_type,
  )


def preference_metrics(
  policy_chosen_logps: jax.Array,
  policy_rejected_logps: jax.Array,
  reference_chosen_logps: jax.Array,
  reference_rejected_logps: jax.Array,
  beta=0.1,
) -> dict[str, jax.Array]:
  """Batch means of the implicit rewards, under TRL's metric names.

  Args:
    policy_chosen_logps: `[B]`.
    policy_rejected_logps: `[B]`.
    reference_chosen_logps: `[B]`.
    reference_rejected_logps: `[B]`.
    beta: inverse temperature of the implicit reward.

  Returns:
    Scalars `rewards/chosen`, `rewards/rejected` (mean implicit rewards),
    `rewards/accuracies` (fraction with chosen > rejected, ties count 0),
    `rewards/margins` (mean chosen - rejected).
  """
  chosen = implicit_rewards(policy_chosen_logps, reference_chosen_logps, beta)
  rejected = implicit_rewards(
    policy_rejected_logps, reference_rejected_logps, beta
  )
  _check_vectors(['chosen rewards', 'rejected rewards'], [chosen, rejected])
  return {
    'rewards/chosen': jnp.mean(chosen),
    'rewards/rejected': jnp.mean(rejected),
    'rewards/accuracies': jnp.mean((chosen > rejected).astype(jnp.float32)),
    'rewards/margins': jnp.mean(chosen - rejected),
  }


class PairLogprobs(NamedTuple):
  """Sequence log-probs of a chosen/rejected batch (`[B]` each)."""

  chosen_logps: jax.Array
  rejected_logps: jax.Array
  chosen_lengths: jax.Array
  rejected_lengths: jax.Array


_BATCH_KEYS = ('tokens', 'attention_mask', 'loss_mask')


def _check_pair_batch(name: str, batch: Mapping[str, jax.Array]) -> None:
  missing = [k for k in _BATCH_KEYS if k not in batch]
  if missing:
    raise ValueError(
      f'{name} batch lacks {missing}; needs {list(_BATCH_KEYS)} (as '
      'common.train.encode_sft returns).'
    )
  for k in _BATCH_KEYS:
    _checks.check_rank(f'{name}[{k!r}]', batch[k], 2, '[B, T]')
  _checks.check_same_shape(
    [f'{name}[{k!r}]' for k in _BATCH_KEYS], [batch[k] for k in _BATCH_KEYS]
  )


def _pad_to(x: jax.Array, length: int) -> jax.Array:
  return jnp.pad(x, ((0, 0), (0, length - x.shape[1])))


def concatenated_sequence_logprobs(
  apply: Callable[..., jax.Array],
  params,
  chosen: Mapping[str, jax.Array],
  rejected: Mapping[str, jax.Array],
  average: bool = False,
) -> PairLogprobs:
  """Chosen and rejected sequence log-probs in one forward pass.

  The two right-padded batches are padded to a common length and
  concatenated on the batch axis (`[2B, T]`), run through the model once,
  and scored with `common.rl.sequence_logprob` over the completion tokens
  (`loss_mask & attention_mask`; the prompt and padding are masked out).

  Args:
    apply: `apply(params, tokens [N, T], attention_mask [N, T]) ->
      logits [N, T, V]`, e.g. `common.models.apply_fn(graphdef)`.
    params: the model's parameters.
    chosen: `{'tokens', 'attention_mask', 'loss_mask'}`, each `[B, T_w]`
      (`common.train.encode_sft` layout: `loss_mask[t]` marks completion
      token `t`).
    rejected: the same keys, `[B, T_l]`.
    average: length-normalise (mean instead of sum over the completion).

  Returns:
    `PairLogprobs` of `[B]` float32 log-probs and `[B]` int32 completion
    lengths.
  """
  _check_pair_batch('chosen', chosen)
  _check_pair_batch('rejected', rejected)
  b = chosen['tokens'].shape[0]
  _checks.check_same_prefix(
    ["chosen['tokens']", "rejected['tokens']"],
    [chosen['tokens'], rejected['tokens']],
    1,
    'chosen and rejected batches must have the same B',
  )
  length = max(chosen['tokens'].shape[1], rejected['tokens'].shape[1])
  cat = {
    k: jnp.concatenate(
      [
        _pad_to(jnp.asarray(chosen[k]), length),
        _pad_to(jnp.asarray(rejected[k]), length),
      ],
      axis=0,
    )
    for k in _BATCH_KEYS
  }
  logits = apply(params, cat['tokens'], cat['attention_mask'])
  token_lp = logprobs_lib.next_token_logprobs(logits, cat['tokens'])
  mask = jnp.logical_and(cat['loss_mask'] != 0, cat['attention_mask'] != 0)
  mask = mask.at[:, 0].set(False)  # nothing predicts token 0
  seq = logprobs_lib.sequence_logprob(token_lp, mask, average=average)
  lengths = jnp.sum(mask, axis=-1).astype(jnp.int32)
  return PairLogprobs(seq[:b], seq[b:], lengths[:b], lengths[b:])
