"""The bi-level trigger optimisation shared by GTA, UGBA, DPGBA and CP-GBA.

Each epoch (one jitted call):

* inner: `inner_steps` Adam steps of the surrogate on the training graph
  with (detached) triggers on V_P, loss CE(V_L, y) + CE(V_P, y_t);
* detector (DPGBA only): `detector_steps` steps separating trigger features
  (class 1) from real node features (class 0);
* outer: V_O = V_P plus `outer_size` random unlabeled nodes, all triggered
  and labelled y_t; loss CE(V_L, y) + w_T CE(V_O, y_t) + lambda_h L_homo
  (+ DPGBA's adversarial detector term and adaptive weights), gradient on
  the trigger generator or repository only.

The attack module maps `(x_targets [M, F], key, mode)` to a trigger
`(feats [M,n,F], inner [M,n,n], attach [M,n])`; `mode` is 'train'
(stochastic, differentiable), 'random' (CP-GBA's R query) or 'eval'.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from graph_attacks import train as train_lib
from graph_attacks import triggers


@dataclasses.dataclass(frozen=True)
class BilevelConfig:
  """Settings of the bi-level loop.

  The jitted epoch takes the structural fields (`STRUCTURE`: loop lengths,
  set sizes, which terms exist) as a static argument and every numeric
  hyperparameter (`HYPERPARAMETERS`) as a traced scalar, so changing a
  learning rate or a loss weight does not recompile.
  """

  inner_steps: int = 1
  outer_size: int = 512
  attack_learning_rate: float = 1e-3
  surrogate_learning_rate: float = 1e-2
  weight_decay: float = 5e-4
  lambda_homo: float = 0.0
  homo_tau: float = 0.5
  random_mode: bool = False  # CP-GBA: average F and R query losses
  adaptive_weight: bool = False  # DPGBA: (1 + exp(-p_t)) NLL
  lambda_detector: float = 0.0  # DPGBA: adversarial OOD term
  detector_steps: int = 0
  lambda_embed: float = 0.0  # DPGBA: w_E, embedding InfoNCE term
  embed_anchors: int = 10  # DPGBA: most confident target-class nodes

  def structure(self) -> Structure:
    """The static part (hashable)."""
    return Structure(
      inner_steps=int(self.inner_steps),
      outer_size=int(self.outer_size),
      random_mode=bool(self.random_mode),
      adaptive_weight=bool(self.adaptive_weight),
      detector_steps=int(self.detector_steps),
      detector_term=self.lambda_detector > 0,
      embed_term=self.lambda_embed > 0,
      embed_anchors=int(self.embed_anchors),
    )

  def hyperparameters(self) -> dict[str, jax.Array]:
    """The traced part: float32 scalars."""
    return {
      k: train_lib.hyperparameter(getattr(self, k)) for k in HYPERPARAMETERS
    }


class Structure(NamedTuple):
  """Static settings of `bilevel_epoch` (shapes, loop lengths, terms)."""

  inner_steps: int
  outer_size: int
  random_mode: bool
  adaptive_weight: bool
  detector_steps: int
  detector_term: bool
  embed_term: bool = False
  embed_anchors: int = 10


HYPERPARAMETERS = (
  'attack_learning_rate',
  'surrogate_learning_rate',
  'weight_decay',
  'lambda_homo',
  'homo_tau',
  'lambda_detector',
  'lambda_embed',
)


def embedding_infonce(
  z: jax.Array, anchors: jax.Array, anchor_ok: jax.Array, tau: float = 1.0
) -> jax.Array:
  """DPGBA's w_E term: pull triggered embeddings to target-class anchors.

  With cosine s, for every row i of `z`,
  l_i = -log(sum_a e^{s(z_i, a)/tau} / (sum_a e^{s(z_i, a)/tau} +
  sum_{j != i} e^{s(z_i, z_j)/tau})) over the valid anchors a; the term is
  mean_i l_i - mean_{i != j} s(z_i, z_j) (the released code's InfoNCE to
  the most confident target-class training embeddings, tau = 1, minus the
  mean pairwise similarity of the triggered nodes; this is our reading of
  it, see the README).

  Args:
    z: `[M, D]` embeddings of the triggered outer nodes.
    anchors: `[A, D]` anchor embeddings (target-class, most confident).
    anchor_ok: bool `[A]` valid anchors (fewer may exist).
    tau: temperature.

  Returns:
    Scalar.
  """
  zn = triggers.l2_normalize(z)
  an = triggers.l2_normalize(anchors)
  m = z.shape[0]
  pos = jnp.where(anchor_ok[None], (zn @ an.T) / tau, -jnp.inf)  # [M, A]
  self_sim = zn @ zn.T
  off = ~jnp.eye(m, dtype=bool)
  neg = jnp.where(off, self_sim / tau, -jnp.inf)  # [M, M]
  log_pos = jax.nn.logsumexp(pos, axis=1)
  log_all = jax.nn.logsumexp(jnp.concatenate([pos, neg], axis=1), axis=1)
  pair = (self_sim * off).sum() / jnp.maximum(off.sum(), 1)
  return (log_all - log_pos).mean() - pair


def _ce(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


@functools.partial(jax.jit, static_argnames=('defs', 'structure'))
def bilevel_epoch(
  defs,
  states,
  opts,
  graph,
  labels,
  train_mask,
  poison,
  candidates,
  target,
  key,
  hparams,
  *,
  structure: Structure,
):
  """One epoch; returns updated (states, opts) and a metrics dict.

  Args:
    defs: (attack graphdef, surrogate graphdef).
    states: (attack params, attack detector state, attack non-parameter
      state, surrogate frozen state, surrogate trainable state).
    opts: optimiser states for (attack, detector, surrogate).
    graph: padded training graph (jnp leaves).
    labels: int `[N]`; train_mask `[N]` float (V_L).
    poison: int `[P]` V_P; candidates: int `[U]` unlabeled nodes.
    target: int scalar y_t.
    hparams: `BilevelConfig.hyperparameters()` (traced scalars).
    structure: `BilevelConfig.structure()` (static).
  """
  cfg = structure
  gdef_a, gdef_s = defs
  st_a, st_d, rest_a, fr_s, st_s = states
  opt_a, opt_d, opt_s = opts
  tx_a = optax.adam(hparams['attack_learning_rate'])
  tx_s = train_lib.adam_l2(
    hparams['surrogate_learning_rate'], hparams['weight_decay']
  )
  tx_d = optax.adam(hparams['attack_learning_rate'])
  x = graph.nodes
  n = x.shape[0]
  k_in, k_out, k_sel, k_det = jax.random.split(key, 4)
  attack = lambda sa, sd: nnx.merge(gdef_a, sd, sa, rest_a)
  y_p = labels.at[poison].set(target)
  m_p = train_mask.at[poison].set(1.0)

  # Inner: fit the surrogate on the poisoned graph (triggers detached).
  trig = attack(st_a, st_d)(x[poison], k_in, 'eval')
  trig = jax.tree.map(jax.lax.stop_gradient, trig)
  g_p = triggers.attach_triggers(graph, poison, *trig)
  big = g_p.nodes.shape[0]
  y_big = jnp.concatenate([y_p, jnp.zeros(big - n, y_p.dtype)])
  m_big = jnp.concatenate([m_p, jnp.zeros(big - n, m_p.dtype)])

  def inner_loss(ss, k):
    logits = nnx.merge(gdef_s, fr_s, ss)(g_p, k)
    return train_lib.masked_cross_entropy(logits, y_big, m_big)

  def inner_step(carry, k):
    ss, os_ = carry
    loss, g = jax.value_and_grad(inner_loss)(ss, k)
    upd, os_ = tx_s.update(g, os_, ss)
    return (optax.apply_updates(ss, upd), os_), loss

  (st_s, opt_s), inner_losses = jax.lax.scan(
    inner_step, (st_s, opt_s), jax.random.split(k_in, cfg.inner_steps)
  )

  # Outer node set: V_P plus random unlabeled nodes.
  extra = jax.random.choice(
    k_sel,
    candidates,
    (cfg.outer_size,),
    replace=candidates.shape[0] < cfg.outer_size,
  )
  outer = jnp.concatenate([poison, extra])

  # DPGBA detector: real features (0) vs trigger features (1).
  def det_loss(sd, sa, k):
    feats = attack(sa, sd)(x[outer], k, 'train')[0]
    det = attack(sa, sd).detector
    real = x[jax.random.choice(k, candidates, (feats.shape[0],))]
    lr_ = det(real)
    lf = det(feats.reshape(-1, feats.shape[-1]))
    return (
      _ce(lr_, jnp.zeros(lr_.shape[0], jnp.int32)).mean()
      + _ce(lf, jnp.ones(lf.shape[0], jnp.int32)).mean()
    )

  def det_step(carry, k):
    sd, od = carry
    loss, g = jax.value_and_grad(det_loss)(sd, jax.lax.stop_gradient(st_a), k)
    upd, od = tx_d.update(g, od, sd)
    return (optax.apply_updates(sd, upd), od), loss

  if cfg.detector_steps > 0:
    (st_d, opt_d), _ = jax.lax.scan(
      det_step, (st_d, opt_d), jax.random.split(k_det, cfg.detector_steps)
    )

  surrogate = nnx.merge(gdef_s, fr_s, st_s)
  y_o = labels.at[outer].set(target)
  m_l = train_mask.at[outer].set(0.0)

  def outer_terms(sa, k, mode):
    feats, inner, att = attack(sa, st_d)(x[outer], k, mode)
    g_o = triggers.attach_triggers(graph, outer, feats, inner, att)
    logits = surrogate(g_o)
    ce_l = train_lib.masked_cross_entropy(logits[:n], y_o, m_l)
    ce_o = _ce(logits[outer], y_o[outer])
    if cfg.adaptive_weight:
      p_t = jax.nn.softmax(logits[outer])[:, target]
      ce_o = (1.0 + jnp.exp(-jax.lax.stop_gradient(p_t))) * ce_o
    loss = ce_l + ce_o.mean()
    homo = triggers.homophily_loss(
      x[outer], feats, inner, att, hparams['homo_tau']
    )
    loss = loss + hparams['lambda_homo'] * homo
    if cfg.detector_term:
      det = attack(sa, st_d).detector(feats.reshape(-1, feats.shape[-1]))
      loss = (
        loss
        + hparams['lambda_detector']
        * _ce(det, jnp.zeros(det.shape[0], jnp.int32)).mean()
      )
    if cfg.embed_term:
      # Anchors: the most confident target-class training nodes.
      conf = jax.lax.stop_gradient(jax.nn.softmax(logits[:n])[:, target])
      is_anchor = (train_mask > 0) & (labels == target)
      score = jnp.where(is_anchor, conf, -jnp.inf)
      top, idx = jax.lax.top_k(score, cfg.embed_anchors)
      emb = surrogate.embed(g_o)
      loss = loss + hparams['lambda_embed'] * embedding_infonce(
        emb[outer], jax.lax.stop_gradient(emb[idx]), jnp.isfinite(top)
      )
    asr = (logits[outer].argmax(-1) == target).mean()
    return loss, (homo, asr)

  def outer_loss(sa):
    loss, aux = outer_terms(sa, k_out, 'train')
    if cfg.random_mode:
      loss_r, _ = outer_terms(sa, jax.random.fold_in(k_out, 1), 'random')
      loss = 0.5 * (loss + loss_r)
    return loss, aux

  (loss, (homo, asr)), g = jax.value_and_grad(outer_loss, has_aux=True)(st_a)
  upd, opt_a = tx_a.update(g, opt_a, st_a)
  st_a = optax.apply_updates(st_a, upd)
  metrics = {
    'inner_loss': inner_losses[-1],
    'outer_loss': loss,
    'homo': homo,
    'outer_asr': asr,
  }
  return (st_a, st_d, rest_a, fr_s, st_s), (opt_a, opt_d, opt_s), metrics


def run_bilevel(
  attack: nnx.Module,
  surrogate: nnx.Module,
  graph,
  labels,
  train_mask,
  poison,
  candidates,
  target: int,
  *,
  epochs: int,
  cfg: BilevelConfig,
  seed: int,
  frozen_surrogate=nnx.Nothing,
  on_epoch=None,
) -> list[dict]:
  """Runs `epochs` bi-level epochs, updating both modules in place.

  `on_epoch(epoch, attack, surrogate)`, if given, is called after each
  epoch (model selection); returning True stops early.

  Raises:
    FloatingPointError: on a non-finite outer loss (names the epoch).
  """
  gdef_a, st_d, st_a, rest_a = nnx.split(
    attack, nnx.PathContains('detector'), nnx.Param, ...
  )
  gdef_s, fr_s, st_s = nnx.split(surrogate, frozen_surrogate, ...)
  tx_a = optax.adam(cfg.attack_learning_rate)
  tx_s = train_lib.adam_l2(cfg.surrogate_learning_rate, cfg.weight_decay)
  opts = (
    tx_a.init(st_a),
    optax.adam(cfg.attack_learning_rate).init(st_d),
    tx_s.init(st_s),
  )
  structure, hparams = cfg.structure(), cfg.hyperparameters()
  states = (st_a, st_d, rest_a, fr_s, st_s)
  graph = jax.tree.map(jnp.asarray, graph)
  args = (
    jnp.asarray(labels, jnp.int32),
    jnp.asarray(train_mask, jnp.float32),
    jnp.asarray(poison, jnp.int32),
    jnp.asarray(candidates, jnp.int32),
    jnp.int32(target),
  )
  history = []
  for epoch in range(epochs):
    states, opts, metrics = bilevel_epoch(
      (gdef_a, gdef_s),
      states,
      opts,
      graph,
      *args,
      jax.random.key(seed * 100003 + epoch),
      hparams,
      structure=structure,
    )
    metrics = {k: float(v) for k, v in metrics.items()}
    if not all(map(jnp.isfinite, metrics.values())):
      raise FloatingPointError(
        f'non-finite trigger loss at epoch {epoch}: {metrics}'
      )
    history.append(metrics)
    nnx.update(attack, states[0], states[1])
    nnx.update(surrogate, states[4])
    if on_epoch is not None and on_epoch(epoch, attack, surrogate):
      break
  return history
