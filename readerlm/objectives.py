"""Training objectives for a compact converter: SFT + SimCTG, DPO, merging.

* `contrastive_loss(hidden, mask, margin)`: SimCTG's token-level loss
  (Su et al. 2022). With `s(i, j)` the cosine similarity of hidden states
  `h_i`, `h_j` of one sequence and `rho` the margin,
  `L_CL = 1 / (n (n - 1)) sum_i sum_{j != i} max(0, rho - s(i, i) + s(i, j))`
  over the `n` masked tokens of each sequence (`s(i, i) = 1`), averaged over
  sequences that have two or more tokens. It pushes distinct positions'
  representations apart (isotropy), the paper's cure for degeneration.
* `make_sft_loss(graphdef, contrastive_weight, margin)`: CE on the
  response tokens + `contrastive_weight * L_CL` on the final hidden states.
* `make_dpo_loss(graphdef, beta)`: DPO from `common.rl.preference`
  (chosen = refined, rejected = draft) with the frozen reference's
  sequence log-probs carried in the batch.
* `linear_merge(params, weights)`: `sum_k w_k theta_k` over checkpoints of
  one architecture, weights >= 0 summing to 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common.rl import preference
from common.train import sft as sft_lib


def contrastive_loss(
  hidden: jax.Array, mask: jax.Array, margin: float = 0.5
) -> jax.Array:
  """SimCTG contrastive loss (module docstring).

  Args:
    hidden: `[B, T, D]` hidden states.
    mask: `[B, T]` bool/0-1, tokens that take part.
    margin: rho.

  Returns:
    Scalar float32 (0 if no sequence has two masked tokens).
  """
  h = hidden.astype(jnp.float32)
  h = h / jnp.maximum(jnp.linalg.norm(h, axis=-1, keepdims=True), 1e-6)
  sim = jnp.einsum('btd,bsd->bts', h, h)
  m = jnp.asarray(mask, jnp.float32)
  t = hidden.shape[1]
  pair = m[:, :, None] * m[:, None, :] * (1.0 - jnp.eye(t))[None]
  hinge = jax.nn.relu(margin - 1.0 + sim) * pair
  n = m.sum(axis=1)
  per_seq = hinge.sum(axis=(1, 2)) / jnp.maximum(n * (n - 1), 1.0)
  has = (n >= 2).astype(jnp.float32)
  return (per_seq * has).sum() / jnp.maximum(has.sum(), 1.0)


def make_sft_loss(
  graphdef: nnx.GraphDef, contrastive_weight=0.0, margin: float = 0.5
):
  """`loss_fn(params, batch, rng) -> (loss, metrics)`; batch as `encode_sft`.

  `contrastive_weight` may be traced (a hyperparameter); 0 skips nothing
  but adds 0, so one compiled step serves both arms.
  """

  def loss_fn(params, batch, rng=None):
    del rng
    model = nnx.merge(graphdef, params)
    attn = batch['attention_mask'].astype(bool)
    out = model(batch['tokens'], attention_mask=attn)
    mask = jnp.logical_and(batch['loss_mask'], attn)
    ce, aux = sft_lib.sft_loss(out.logits, batch['tokens'], mask)
    cl = contrastive_loss(out.hidden, mask, margin)
    aux = dict(aux, ce=ce, contrastive=cl)
    return ce + contrastive_weight * cl, aux

  return loss_fn


def make_dpo_loss(
  graphdef: nnx.GraphDef, beta: float = 0.1, loss_type: str = 'sigmoid'
):
  """DPO over `{'chosen': sft batch, 'rejected': sft batch, 'ref_chosen' [B],
  'ref_rejected' [B]}` (reference log-probs precomputed, constants).

  `loss_type` is `common.rl.preference.dpo_loss`'s: `'sigmoid'` (DPO on
  summed log-probs) or `'sigmoid_norm'` (length-normalised DPO: each log-prob
  divided by its response length, so a shorter response is not preferred
  merely for having fewer tokens), `'ipo'`, `'hinge'`.
  """
  if loss_type not in preference.LOSS_TYPES:
    raise ValueError(
      f'loss_type={loss_type!r}: must be one of {preference.LOSS_TYPES}.'
    )

  def apply(params, tokens, mask):
    return nnx.merge(graphdef, params)(
      tokens, attention_mask=mask.astype(bool)
    ).logits

  def loss_fn(params, batch, rng=None):
    del rng
    lp = preference.concatenated_sequence_logprobs(
      apply, params, batch['chosen'], batch['rejected']
    )
    losses = preference.dpo_loss(
      lp.chosen_logps, lp.rejected_logps, batch['ref_chosen'],
      batch['ref_rejected'], beta=beta, loss_type=loss_type,
      chosen_lengths=lp.chosen_lengths, rejected_lengths=lp.rejected_lengths,
    )  # fmt: skip
    m = preference.preference_metrics(
      lp.chosen_logps, lp.rejected_logps, batch['ref_chosen'],
      batch['ref_rejected'], beta=beta,
    )  # fmt: skip
    aux = {k.replace('/', '_'): v for k, v in m.items()}
    return losses.mean(), aux

  return loss_fn, apply


def reference_logps(
  apply, params, chosen, rejected
) -> tuple[np.ndarray, np.ndarray]:
  """Sequence log-probs `[B]` of chosen/rejected under frozen `params`."""
  lp = jax.jit(
    lambda p, c, r: preference.concatenated_sequence_logprobs(apply, p, c, r)
  )(params, chosen, rejected)
  return np.asarray(lp.chosen_logps), np.asarray(lp.rejected_logps)


def linear_merge(params: Sequence, weights: Sequence[float]):
  """`sum_k w_k params_k` (same tree structure; weights >= 0, sum 1)."""
  if len(params) != len(weights) or not params:
    raise ValueError(
      f'linear_merge: {len(params)} checkpoints but {len(weights)} weights'
    )
  w = np.asarray(weights, np.float64)
  if np.any(w < 0) or not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-6):
    raise ValueError(
      f'linear_merge weights must be >= 0 and sum to 1: {list(w)}'
    )
  structs = {jax.tree.structure(p) for p in params}
  if len(structs) != 1:
    raise ValueError('linear_merge: checkpoints have different structures')
  return jax.tree.map(
    lambda *xs: sum(
      float(wk) * x.astype(jnp.float32) for wk, x in zip(w, xs, strict=True)
    ).astype(xs[0].dtype),
    *params,
  )
