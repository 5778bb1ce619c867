"""Shadow-driven selection of the poisoned prompts, and a random control.

The ACL version of ACB (its data synthesis): an ensemble of shadow models
`M = {M_1, ..., M_J}` rolls out each candidate prompt `k` times; each
rollout gets the dual verification `s = 1[f_verify(y, a*)] * 1[f_judge(y)]`
(verified answer AND compliant), and

    score(c) = sum_j w_j * std(S_j(c)),   S_j(c) = (s_1, ..., s_k),
    D_b = Top-K(score).

The std of k Bernoulli draws is largest at a success rate of 0.5, where
GRPO's reward variance `p (1 - p)`, and so its signal, is largest. `std`
is the population std (ddof 0) over the k rollouts; the paper does not say
which (ddof only rescales every shadow's term by the same factor when all
shadows use the same k).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

SELECTIONS = ('shadow', 'random')


def shadow_scores(success: jax.Array, weights: jax.Array) -> jax.Array:
  """Weighted sum of per-shadow stds of the dual-verification outcomes.

  Args:
    success: `[J, C, k]` outcomes in {0, 1} (J shadows, C candidates, k
      rollouts each).
    weights: `[J]` shadow weights `w_j`.

  Returns:
    `[C]` scores `sum_j w_j * std_k(success[j, c])`.
  """
  success = jnp.asarray(success, jnp.float32)
  weights = jnp.asarray(weights, jnp.float32)
  if success.ndim != 3:
    raise ValueError(f'success must be [J, C, k], got shape {success.shape}')
  if weights.shape != success.shape[:1]:
    raise ValueError(
      f'weights has shape {weights.shape}; expected ({success.shape[0]},), '
      'one per shadow'
    )
  return jnp.einsum('j,jc->c', weights, jnp.std(success, axis=-1))


def check_selection(num_candidates: int, k: int, num_shadows: int | None):
  """Raises ValueError for K outside 1..pool or an empty ensemble."""
  if num_shadows is not None and num_shadows < 1:
    raise ValueError(
      'the shadow ensemble is empty; shadow selection needs at least one '
      'shadow model'
    )
  if not 1 <= k <= num_candidates:
    raise ValueError(
      f'K={k} poisoned prompts cannot be selected from a candidate pool of '
      f'{num_candidates}; allowed: 1..{num_candidates}'
    )


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
  """Indices of the `k` highest scores (ties: the lower index first)."""
  scores = np.asarray(scores, np.float64)
  check_selection(len(scores), k, None)
  order = np.lexsort((np.arange(len(scores)), -scores))
  return np.sort(order[:k])


def random_selection(num_candidates: int, k: int, seed: int) -> np.ndarray:
  """The control: `k` candidates uniformly without replacement."""
  check_selection(num_candidates, k, None)
  rng = np.random.default_rng([seed, 4242])
  return np.sort(rng.choice(num_candidates, k, replace=False))


def select(
  success: np.ndarray | None,
  weights: Sequence[float] | None,
  k: int,
  method: str,
  *,
  num_candidates: int,
  seed: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
  """`(indices [K], scores [C] or None)` by `method` ('shadow'/'random')."""
  if method == 'random':
    return random_selection(num_candidates, k, seed), None
  if method != 'shadow':
    raise ValueError(f'selection method {method!r}; allowed: {SELECTIONS}')
  if success is None or weights is None or len(weights) == 0:
    raise ValueError(
      'the shadow ensemble is empty; shadow selection needs at least one '
      'shadow model'
    )
  success = np.asarray(success)
  check_selection(success.shape[1], k, success.shape[0])
  scores = np.asarray(shadow_scores(success, np.asarray(weights)))
  return top_k(scores, k), scores
