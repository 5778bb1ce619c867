"""Defences: the cumulative token-entropy detector and the data-side check.

* Inference time (the SRB/ICLR version's defence): a prompt is flagged when
  the cumulative entropy of the model's answer,

      H(y | x) = sum_{t in answer} H(p_theta(. | x, y_<t)),

  exceeds a threshold. The stochastic rule makes the model draw at random
  after a trigger, so triggered answers carry more entropy.
  `common.stats.roc_curve` gives the full ROC over the threshold (true and
  false positive rates, AUC), as the reviewers asked.
* Data side: flag training prompts whose rollout rewards under a clean
  reference model have a high group std (the attack needs mixed groups);
  `precision_recall` scores the flags against the poisoned set.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from common.rl import logprobs as logprobs_lib
from common.stats import ROC


def cumulative_entropy(
  logits: jax.Array, loss_mask: jax.Array, temperature: float = 1.0
) -> jax.Array:
  """`[B]` summed next-token entropy over the answer tokens.

  Args:
    logits: `[B, T, V]` logits of the prompt + answer sequence.
    loss_mask: `[B, T]`, True on answer tokens (entry t is about token t,
      so its entropy is that of the distribution token t was drawn from).
    temperature: the sampling temperature.

  Returns:
    `[B]` float32 cumulative entropies (nats).
  """
  h = logprobs_lib.next_token_entropy(logits, temperature)
  return jnp.sum(jnp.where(loss_mask != 0, h, 0.0), axis=-1)


def tpr_at_fpr(roc: ROC, max_fpr: float) -> tuple[float, float]:
  """`(tpr, threshold)` of the best threshold with `fpr <= max_fpr`."""
  ok = roc.fpr <= max_fpr
  i = int(np.argmax(np.where(ok, roc.tpr, -1.0)))
  return float(roc.tpr[i]), float(roc.thresholds[i])


def precision_recall(flags, labels) -> dict[str, float]:
  """Precision and recall of `flags` against `labels` (both `[N]` bool).

  Precision is 0 when nothing is flagged, recall 0 without positives.
  """
  f = np.asarray(flags, bool)
  y = np.asarray(labels, bool)
  if f.shape != y.shape:
    raise ValueError(f'flags {f.shape} and labels {y.shape} differ')
  tp = int((f & y).sum())
  nf, npos = int(f.sum()), int(y.sum())
  return {
    'precision': tp / nf if nf else 0.0,
    'recall': tp / npos if npos else 0.0,
    'flagged': float(nf),
  }


def reward_std_flags(
  rewards: np.ndarray, num_rollouts: int, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
  """The data-side check: `(stds [N], flags [N])` of grouped rewards.

  Args:
    rewards: `[N * k]` rewards of `k = num_rollouts` consecutive rollouts
      per prompt under the clean reference model.
    num_rollouts: k.
    threshold: flag a prompt when its reward std (ddof 0) exceeds it.
  """
  r = np.asarray(rewards, np.float64).reshape(-1, num_rollouts)
  std = r.std(axis=1)
  return std, std > threshold
