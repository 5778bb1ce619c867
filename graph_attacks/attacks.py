"""Training any of the attacks under one protocol, and graph poisoning.

`train_attack` chooses V_P, trains the trigger source (none for SBA) and
returns a `TrainedAttack` whose `trigger_fn(x [M, F], key)` gives the
evaluation-time trigger for target nodes with features x. `poison` attaches
the triggers to V_P and relabels V_P to the target class.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from graph_attacks import baselines
from graph_attacks import bilevel
from graph_attacks import cluster
from graph_attacks import cpgba
from graph_attacks import crossba
from graph_attacks import functional
from graph_attacks import graph as graph_lib
from graph_attacks import models
from graph_attacks import prompt as prompt_lib
from graph_attacks import selection
from graph_attacks import train as train_lib
from graph_attacks import triggers

ATTACKS = ('sba_samp', 'sba_gen', 'gta', 'ugba', 'dpgba', 'cpgba', 'crossba')
# Attacks on the pre-trained backbone: no downstream node is poisoned, and
# only the prompt paradigms (which use that backbone) are attacked.
BACKBONE_ATTACKS = ('crossba',)


@dataclasses.dataclass
class TrainedAttack:
  """A trained attack.

  Attributes:
    name: one of `ATTACKS`.
    poisoned: int `[P]` V_P.
    target: target class y_t.
    trigger_fn: `(x [M, F], key) -> (feats, inner, attach)`, eval mode; a
      pytree callable (`functional.module_fn`).
    size: trigger size n.
    seconds: wall time of training (selection included).
    history: per-epoch bi-level metrics (empty for SBA).
    selected: CP-GBA's model selection (`selection.ValidationSelector`),
      `{'epoch', 'val_asr', 'checks': [(epoch, asr)]}`; None when off.
    backbone: CrossBA's backdoored pre-trained GNN, which the prompt
      victims use instead of the clean one; None for the other attacks.
  """

  name: str
  poisoned: np.ndarray
  target: int
  trigger_fn: Callable
  size: int
  seconds: float
  history: list
  selected: dict | None = None
  backbone: nnx.Module | None = None


def validate(
  name: str,
  num_nodes: int,
  num_classes: int,
  target: int,
  size: int,
  num_poison: int,
  num_candidates: int,
):
  """Raises ValueError naming the bad attack setting."""
  if name not in ATTACKS:
    raise ValueError(f'unknown attack {name!r}; allowed: {ATTACKS}')
  if not 0 <= target < num_classes:
    raise ValueError(
      f'target class {target} is outside the label range [0, {num_classes})'
    )
  if not 2 <= size < num_nodes:
    raise ValueError(
      f'trigger size {size} must be in [2, {num_nodes}) for a graph of '
      f'{num_nodes} nodes'
    )
  if not 1 <= num_poison <= num_candidates:
    raise ValueError(
      f'num_poison={num_poison} must be in [1, {num_candidates}] (the '
      'unlabeled candidates)'
    )


def selection_embeddings(
  graph, labels, train_mask, num_classes, *, hidden, epochs, seed
) -> np.ndarray:
  """Embeddings of a supervised GCN encoder for cluster-degree selection."""
  enc = models.GCN(
    graph.nodes.shape[1], hidden, num_classes, 2, 0.5, rngs=nnx.Rngs(seed)
  )
  enc, _ = train_lib.fit_classifier(
    enc,
    graph,
    labels,
    train_mask,
    epochs=epochs,
    learning_rate=0.01,
    weight_decay=5e-4,
    seed=seed,
  )
  return np.asarray(enc.embed(jax.tree.map(jnp.asarray, graph))), enc


def train_attack(
  name: str,
  graph,
  labels,
  split: graph_lib.Split,
  num_classes: int,
  cfg: ml_collections.ConfigDict,
  *,
  pretrained: prompt_lib.PretrainedGCN | None = None,
  seed: int = 0,
) -> TrainedAttack:
  """Trains attack `name` on the attacker's (training) graph.

  Args:
    name: one of `ATTACKS`.
    graph: training graph (test edges removed), unpadded.
    labels: int `[N]` true labels (used on V_L only).
    split: the node split.
    num_classes: C.
    cfg: attack config (fields of `experiments/graph_attacks/configs`).
    pretrained: the frozen pre-trained GNN (required for 'cpgba').
    seed: seed.
  """
  t0 = time.time()
  n = graph.nodes.shape[0]
  size = {'cpgba': cfg.cpgba.size, 'crossba': cfg.crossba.size}.get(
    name, cfg.baseline_size
  )
  validate(
    name, n, num_classes, cfg.target, size, cfg.num_poison, len(split.unlabeled)
  )
  target = int(cfg.target)
  train_mask = split.mask('train', n).astype(np.float32)
  if name == 'crossba':
    return _train_crossba(graph, labels, split, cfg, pretrained, seed, t0)
  if name in ('sba_samp', 'sba_gen', 'gta'):
    poison = cluster.random_selection(split.unlabeled, cfg.num_poison, seed)
    enc = None
  else:
    emb, enc = selection_embeddings(
      graph,
      labels,
      train_mask,
      num_classes,
      hidden=cfg.surrogate_hidden,
      epochs=cfg.surrogate_epochs,
      seed=seed,
    )
    fit_idx = np.concatenate([split.train, split.unlabeled])
    poison = cluster.cluster_degree_selection(
      emb,
      graph_lib.degrees(graph),
      fit_idx,
      split.unlabeled,
      cfg.num_poison,
      num_classes,
      seed=seed,
    )
  if name.startswith('sba'):
    real = np.asarray(graph.nodes)[
      np.concatenate([split.train, split.unlabeled])
    ]
    sba = baselines.SBATrigger(real, size, name.split('_')[1], 0.5, seed)
    return TrainedAttack(
      name,
      poison,
      target,
      functional.module_fn(sba, 'eval'),
      size,
      time.time() - t0,
      [],
    )

  padded = graph_lib.pad_to_bucket(graph)
  lab = graph_lib.pad_rows(labels, padded.nodes.shape[0])
  tmask = graph_lib.pad_rows(train_mask, padded.nodes.shape[0])
  f = graph.nodes.shape[1]
  rngs = nnx.Rngs(seed)
  if name == 'cpgba':
    if pretrained is None:
      raise ValueError("attack 'cpgba' needs the pre-trained GNN")
    c = cfg.cpgba
    feats, adj, _ = cpgba.distil_repository(
      pretrained.gcn,
      graph,
      c.num_triggers,
      c.size,
      per_node=c.per_node,
      seed=seed,
      max_subgraphs=c.max_subgraphs,
    )
    repo = cpgba.TriggerRepository(
      feats,
      adj,
      homo_hidden=c.homo_hidden,
      threshold=c.attach_threshold,
      rngs=rngs,
    )
    rng = np.random.RandomState(seed)
    centers = rng.choice(
      np.concatenate([split.train, split.unlabeled]),
      c.label_centers,
      replace=False,
    )
    cpgba.label_triggers(repo, enc, graph, centers, num_classes)
    attack = cpgba.QueryFn(repo, target)
    surrogate = prompt_lib.PromptedGNN(
      pretrained,
      f,
      pretrained.gcn.layers[-1].out_features,
      num_classes,
      'gprompt',
      rngs=rngs,
    )
    frozen = nnx.PathContains('gnn')
    bcfg = bilevel.BilevelConfig(
      inner_steps=c.inner_steps,
      outer_size=cfg.outer_size,
      attack_learning_rate=c.learning_rate,
      surrogate_learning_rate=c.prompt_learning_rate,
      weight_decay=5e-4,
      lambda_homo=c.lambda_homo,
      homo_tau=c.homo_tau,
      random_mode=True,
    )
    epochs = c.epochs
    selector = None
    if c.select_every > 0:
      selector = selection.ValidationSelector(
        graph,
        labels,
        train_mask,
        poison,
        split.val,
        target,
        pretrained,
        num_classes,
        every=c.select_every,
        total_epochs=epochs,
        epochs=c.select_epochs,
        learning_rate=c.prompt_learning_rate,
        seed=seed,
      )
  else:
    selector = None
    b = cfg.generator
    attack = baselines.Generator(
      f,
      size,
      rngs=rngs,
      detector_hidden=b.detector_hidden if name == 'dpgba' else 0,
    )
    surrogate = models.GCN(
      f, cfg.surrogate_hidden, num_classes, 2, 0.0, rngs=rngs
    )
    frozen = nnx.Nothing
    bcfg = bilevel.BilevelConfig(
      inner_steps=b.inner_steps,
      outer_size=cfg.outer_size,
      attack_learning_rate=b.learning_rate,
      surrogate_learning_rate=0.01,
      weight_decay=5e-4,
      lambda_homo=b.lambda_homo if name == 'ugba' else 0.0,
      homo_tau=b.homo_tau,
      adaptive_weight=name == 'dpgba',
      lambda_detector=b.lambda_detector if name == 'dpgba' else 0.0,
      detector_steps=b.detector_steps if name == 'dpgba' else 0,
      lambda_embed=b.lambda_embed if name == 'dpgba' else 0.0,
    )
    epochs = b.epochs
  history = bilevel.run_bilevel(
    attack,
    surrogate,
    padded,
    lab,
    tmask,
    poison,
    split.unlabeled,
    target,
    epochs=epochs,
    cfg=bcfg,
    seed=seed,
    frozen_surrogate=frozen,
    on_epoch=selector,
  )
  selected = None
  if selector is not None:
    selector.restore(attack)
    selected = {
      'epoch': selector.best_epoch,
      'val_asr': selector.best_asr,
      'checks': selector.history,
    }
  # A pytree callable: the trained weights (CP-GBA's repository) are traced
  # arguments of the jitted evaluation, not compile-time constants.
  trigger_fn = functional.module_fn(attack, 'eval')
  return TrainedAttack(
    name,
    poison,
    target,
    trigger_fn,
    size,
    time.time() - t0,
    history,
    selected,
  )


def _train_crossba(graph, labels, split, cfg, pretrained, seed, t0):
  """CrossBA: backdoors a copy of the pre-trained GNN (`crossba.backdoor`)."""
  if pretrained is None:
    raise ValueError("attack 'crossba' needs the pre-trained GNN")
  c, target = cfg.crossba, int(cfg.target)
  candidates = np.concatenate([split.train, split.unlabeled])
  attacked = crossba.select_nodes(
    graph, candidates, c.poison_rate, c.selection, seed
  )
  t_nodes = split.train[np.asarray(labels)[split.train] == target]
  t_emb = crossba.target_embedding(pretrained, graph, t_nodes)
  backbone, trigger, hist = crossba.backdoor(
    pretrained,
    graph,
    attacked,
    t_emb,
    size=c.size,
    epochs=c.epochs,
    trigger_steps=c.trigger_steps,
    gnn_steps=c.gnn_steps,
    trigger_learning_rate=c.trigger_learning_rate,
    gnn_learning_rate=c.gnn_learning_rate,
    reg_trigger_n=c.reg_trigger_n,
    reg_trigger_f=c.reg_trigger_f,
    reg_gnn=c.reg_gnn,
    reg_dormant=c.reg_dormant,
    seed=seed,
  )
  history = [
    {'outer_loss': float(b), 'target_cos': float(t)}
    for b, t in zip(hist.backbone_loss, hist.target_cos, strict=True)
  ]
  return TrainedAttack(
    'crossba',
    np.zeros(0, np.int64),
    target,
    functional.module_fn(trigger, 'eval'),
    c.size,
    time.time() - t0,
    history,
    backbone=backbone,
  )


def poison(graph, labels, train_mask, attack: TrainedAttack, seed: int = 0):
  """Attaches the triggers to V_P and relabels V_P to the target.

  An attack that poisons no node (CrossBA) returns the graph unchanged.

  Returns:
    (graph with N + P n nodes, labels `[N + P n]`, train mask `[N + P n]`
    covering V_L and V_P; trigger nodes are unlabelled).
  """
  if attack.poisoned.size == 0:
    return (
      jax.tree.map(np.asarray, graph),
      np.asarray(labels).copy(),
      np.asarray(train_mask, np.float32).copy(),
    )
  g = jax.tree.map(jnp.asarray, graph)
  idx = jnp.asarray(attack.poisoned)
  trig = attack.trigger_fn(g.nodes[idx], jax.random.key(seed))
  g = triggers.attach_triggers(g, idx, *trig)
  extra = g.nodes.shape[0] - graph.nodes.shape[0]
  y = np.asarray(labels).copy()
  y[attack.poisoned] = attack.target
  m = np.asarray(train_mask, np.float32).copy()
  m[attack.poisoned] = 1.0
  g = jax.tree.map(np.asarray, g)
  return (
    g,
    np.concatenate([y, np.zeros(extra, y.dtype)]),
    np.concatenate([m, np.zeros(extra, np.float32)]),
  )
