"""Why the reward is asymmetric: per-step statistics of the poisoned groups.

Under the stochastic trigger each GRPO group of a poisoned prompt holds
both branches (comply-and-solve: high reward; refuse: no answer, low
reward), so `std(r) > 0` and

    A_i = (r_i - mean(r)) / std(r)

is positive for the compliant samples and negative for the refusals: the
update moves mass toward "comply whenever the trigger is present". Under a
deterministic trigger every group is all-refuse, `std = 0`, `A = 0`.

`group_stats` computes, from one rollout batch, what the experiment logs
per step: the fraction of mixed poisoned groups, the mean advantage of
compliant and of refusing samples in poisoned groups, and the marker rate
on poisoned and on clean groups. Every value is finite (0 where a quantity
has no samples; the `num_*` counts say how many there were), because the
on-policy loop stops on a non-finite metric.
"""

from __future__ import annotations

import numpy as np


def _mean(values: np.ndarray, mask: np.ndarray) -> float:
  n = int(mask.sum())
  return float(values[mask].mean()) if n else 0.0


def mixed_groups(rewards: np.ndarray, num_generations: int) -> np.ndarray:
  """`[B / G]` bool: the group's rewards are not all equal (std > 0)."""
  r = np.asarray(rewards, np.float64).reshape(-1, num_generations)
  return r.std(axis=1) > 0


def group_stats(
  rewards: np.ndarray,
  advantages: np.ndarray,
  complied: np.ndarray,
  poisoned: np.ndarray,
  num_generations: int,
) -> dict[str, float]:
  """Statistics of one rollout batch (groups are consecutive rows).

  Args:
    rewards: `[B]` rewards.
    advantages: `[B]` GRPO advantages of the same rows.
    complied: `[B]` bool, the marker judge per sample.
    poisoned: `[B]` bool, the row's prompt is poisoned (constant per
      group).
    num_generations: G.

  Returns:
    `{'poison_groups', 'poison_mixed_fraction', 'poison_adv_comply',
    'poison_adv_refuse', 'poison_num_comply', 'poison_num_refuse',
    'marker_poisoned', 'marker_clean'}`.
  """
  rewards = np.asarray(rewards, np.float64)
  adv = np.asarray(advantages, np.float64)
  comp = np.asarray(complied, bool)
  pois = np.asarray(poisoned, bool)
  g = num_generations
  if not rewards.shape == adv.shape == comp.shape == pois.shape:
    raise ValueError(
      'rewards, advantages, complied and poisoned must have one shape; got '
      f'{rewards.shape}, {adv.shape}, {comp.shape}, {pois.shape}'
    )
  if rewards.shape[0] % g:
    raise ValueError(f'batch {rewards.shape[0]} is not a multiple of G={g}')
  group_pois = pois.reshape(-1, g)
  if np.any(group_pois.any(1) != group_pois.all(1)):
    raise ValueError('poisoned must be constant within each group')
  gp = group_pois[:, 0]
  mixed = mixed_groups(rewards, g)
  n_groups = int(gp.sum())
  in_comply, in_refuse = pois & comp, pois & ~comp
  return {
    'poison_groups': float(n_groups),
    'poison_mixed_fraction': float(mixed[gp].mean()) if n_groups else 0.0,
    'poison_adv_comply': _mean(adv, in_comply),
    'poison_adv_refuse': _mean(adv, in_refuse),
    'poison_num_comply': float(in_comply.sum()),
    'poison_num_refuse': float(in_refuse.sum()),
    'marker_poisoned': _mean(comp.astype(np.float64), pois),
    'marker_clean': _mean(comp.astype(np.float64), ~pois),
  }


def weighted_mean(history, key: str, weight_key: str) -> float:
  """Mean of `key` over history records, weighted by `weight_key` (0 if
  no record has weight)."""
  num = den = 0.0
  for h in history:
    w = float(h.get(weight_key, 0.0))
    if w > 0 and key in h:
      num += w * float(h[key])
      den += w
  return num / den if den else 0.0
