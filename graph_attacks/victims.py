"""Victim training under each paradigm and the defences around it.

`fit_victim` returns a jitted `logits_fn(graph) -> [N, C]` for:
'gcn', 'gat', 'sage' (supervised), 'grace' (GRACE + linear probe), and
'gprompt', 'gpf', 'gpf_plus' (prompt + head on the frozen pre-trained GNN).
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np

from graph_attacks import contrastive
from graph_attacks import defences
from graph_attacks import functional
from graph_attacks import models
from graph_attacks import prompt as prompt_lib
from graph_attacks import train as train_lib

SUPERVISED = ('gcn', 'gat', 'sage')
PARADIGMS = SUPERVISED + ('grace',) + prompt_lib.PROMPTS


def paradigm_family(name: str) -> str:
  """'GSL', 'GCL' or 'GPL'."""
  if name in SUPERVISED:
    return 'GSL'
  if name == 'grace':
    return 'GCL'
  if name in prompt_lib.PROMPTS:
    return 'GPL'
  raise ValueError(f'unknown paradigm {name!r}; allowed: {PARADIGMS}')


def _fit_supervised(
  paradigm, graph, labels, train_mask, num_classes, cfg, seed, unlearn_mask=None
):
  """A supervised victim (`cfg.hidden`, dropout, AdamW) fitted on the graph."""
  model = models.build_model(
    paradigm,
    graph.nodes.shape[1],
    cfg.hidden,
    num_classes,
    seed=seed,
    dropout_rate=cfg.dropout,
  )
  model, _ = train_lib.fit_classifier(
    model,
    graph,
    labels,
    train_mask,
    epochs=cfg.epochs,
    learning_rate=cfg.learning_rate,
    weight_decay=cfg.weight_decay,
    seed=seed,
    unlearn_mask=unlearn_mask,
  )
  return model


def fit_victim(
  paradigm: str,
  graph,
  labels,
  train_mask,
  num_classes: int,
  cfg: ml_collections.ConfigDict,
  *,
  num_real_nodes: int,
  pretrained: prompt_lib.PretrainedGCN | None,
  seed: int,
  unlearn_mask=None,
):
  """Trains a victim on the (poisoned, padded) graph; returns logits_fn.

  `logits_fn(graph) -> [N, C]` is a pytree callable
  (`functional.module_fn`), so jitted evaluations take it as an argument.
  `seed` seeds the victim's initialisation and dropout; the experiment
  passes the attacker's seed plus `victim.seed_offset` (an independent
  victim: the attacker knows the architecture, not the weights).
  """
  family = paradigm_family(paradigm)
  if family == 'GSL':
    model = _fit_supervised(
      paradigm, graph, labels, train_mask, num_classes, cfg, seed, unlearn_mask
    )
  elif family == 'GCL':
    g = cfg.grace
    enc = contrastive.train_grace(
      graph,
      num_real_nodes=num_real_nodes,
      hidden=g.hidden,
      proj=g.proj,
      epochs=g.epochs,
      learning_rate=g.learning_rate,
      weight_decay=g.weight_decay,
      p_edge=tuple(g.p_edge),
      p_feat=tuple(g.p_feat),
      tau=g.tau,
      seed=seed,
    )
    model = contrastive.fit_probe(
      enc,
      graph,
      labels,
      train_mask,
      num_classes,
      epochs=g.probe_epochs,
      learning_rate=g.probe_learning_rate,
      weight_decay=g.probe_weight_decay,
      seed=seed,
    )
  else:
    if pretrained is None:
      raise ValueError(f'paradigm {paradigm!r} needs the pre-trained GNN')
    p = cfg.prompt
    model = prompt_lib.fit_prompt(
      pretrained,
      graph,
      labels,
      train_mask,
      num_classes,
      kind=paradigm,
      epochs=p.epochs,
      learning_rate=p.learning_rate,
      weight_decay=p.weight_decay,
      seed=seed,
    )
  return functional.module_fn(model)


def rigbd_victim(
  paradigm,
  graph,
  labels,
  train_mask,
  num_classes,
  cfg,
  target: int,
  *,
  num_real_nodes,
  seed,
):
  """RIGBD: train, flag by random edge dropping, retrain with unlearning.

  Returns:
    (logits_fn, flagged node ids).
  """
  if paradigm not in SUPERVISED:
    raise ValueError(
      f'RIGBD applies to supervised victims {SUPERVISED}, not {paradigm!r}'
    )
  r = cfg.rigbd
  model = _fit_supervised(
    paradigm, graph, labels, train_mask, num_classes, cfg, seed
  )
  train_idx = np.flatnonzero(np.asarray(train_mask)[:num_real_nodes] > 0)
  flagged = defences.rigbd_flag(
    model,
    graph,
    labels,
    train_idx,
    target,
    passes=r.passes,
    drop_rate=r.drop_rate,
    seed=seed,
  )
  mask = np.asarray(train_mask, np.float32).copy()
  unlearn = np.zeros_like(mask)
  mask[flagged] = 0.0
  unlearn[flagged] = 1.0
  model = models.build_model(
    paradigm,
    graph.nodes.shape[1],
    cfg.hidden,
    num_classes,
    seed=seed + 1,
    dropout_rate=cfg.dropout,
  )
  model, _ = train_lib.fit_classifier(
    model,
    graph,
    labels,
    mask,
    epochs=r.retrain_epochs,
    learning_rate=cfg.learning_rate,
    weight_decay=cfg.weight_decay,
    seed=seed,
    unlearn_mask=jnp.asarray(unlearn),
  )
  return functional.module_fn(model), flagged
