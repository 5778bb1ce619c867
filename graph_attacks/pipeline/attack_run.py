"""Stage 3: one (seed, attack) unit, its triggers and every victim.

The attack's triggers are trained once on the attacker's training graph;
the training and full graphs are poisoned (triggers on V_P, V_P relabelled
y_t); then, for every defence, each paradigm's victim is trained on the
(defended) poisoned graph and scored: CA on the clean-test nodes, overall
ASR on the triggered 2-hop subgraphs of the attack nodes.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from graph_attacks import attacks as attacks_lib
from graph_attacks import defences
from graph_attacks import evaluate
from graph_attacks import graph as graph_lib
from graph_attacks import victims
from graph_attacks.pipeline import prepare

# Per-epoch bi-level metrics kept in a unit's result (for the curves).
HISTORY_KEYS = ('outer_asr', 'outer_loss')


def defence_fn(name: str, cfg: ml_collections.ConfigDict, graph, num_real):
  """Graph-editing defence built on `graph` (None for 'none' and 'rigbd').

  Args:
    name: one of `defences.DEFENCES`.
    cfg: the config's `defence` field.
    graph: the padded poisoned training graph (OD fits its threshold here).
    num_real: nodes of `graph` before padding.
  """
  if name == 'prune':
    thr = cfg.prune_threshold
    return lambda g: defences.prune_edges(jax.tree.map(jnp.asarray, g), thr)
  if name == 'od':
    real = np.arange(graph.nodes.shape[0]) < num_real
    od = defences.OutlierDetector(
      graph.nodes, real, epochs=cfg.od_epochs, percentile=cfg.od_percentile
    )
    return lambda g: od.apply(jax.tree.map(jnp.asarray, g))
  return None


def victim_runs(config: ml_collections.ConfigDict):
  """The (defence, paradigm) pairs a unit trains, in order."""
  for dname in config.defences:
    for par in config.paradigms:
      if dname != 'none' and par not in config.defence_paradigms:
        continue
      if dname == 'rigbd' and par not in victims.SUPERVISED:
        continue
      yield dname, par


def run_seed_attack(
  config: ml_collections.ConfigDict,
  inputs: prepare.SeedInputs,
  attack_name: str,
) -> dict:
  """Trains one attack and evaluates every (defence, paradigm) victim.

  Returns:
    `{'rows': [{'attack', 'defence', 'paradigm', 'asr', 'ca',
    'flagged_poison_frac'}], 'attack_seconds', 'eval_seconds',
    'eval_subgraphs', 'history': {key: [per epoch]}}`.
  """
  data, split, seed = inputs.data, inputs.split, inputs.seed
  labels, c = data.labels, data.num_classes
  pretrained, batch = inputs.pretrained, inputs.batch
  attack = attacks_lib.train_attack(
    attack_name,
    inputs.train_graph,
    labels,
    split,
    c,
    config.attack,
    pretrained=pretrained,
    seed=seed,
  )
  g_p, y_p, m_p = attacks_lib.poison(
    inputs.train_graph, labels, inputs.train_mask, attack, seed
  )
  full_p, _, _ = attacks_lib.poison(
    data.graph, labels, inputs.train_mask, attack, seed
  )
  num_real = g_p.nodes.shape[0]
  g_p, y_p, m_p = prepare.padded(g_p, y_p, m_p)
  full_p = graph_lib.pad_to_bucket(full_p)
  rows, eval_time, eval_count = [], 0.0, 0
  built = {}
  for dname, par in victim_runs(config):
    if dname not in built:
      dfn = defence_fn(dname, config.defence, g_p, num_real)
      g_train = g_p if dfn is None else jax.tree.map(np.asarray, dfn(g_p))
      g_full = full_p if dfn is None else dfn(full_p)
      built[dname] = (dfn, g_train, g_full)
    dfn, g_train, g_full = built[dname]
    if dname == 'rigbd':
      fn, flagged = victims.rigbd_victim(
        par,
        g_train,
        y_p,
        m_p,
        c,
        config.victim,
        attack.target,
        num_real_nodes=num_real,
        seed=seed,
      )
      caught = float(np.isin(attack.poisoned, flagged).mean())
    else:
      fn = victims.fit_victim(
        par,
        g_train,
        y_p,
        m_p,
        c,
        config.victim,
        num_real_nodes=num_real,
        pretrained=pretrained,
        seed=seed,
      )
      caught = None
    ca = evaluate.accuracy(fn, g_full, labels, split.clean_test)
    t0 = time.time()
    asr = evaluate.attack_success_rate(
      fn, batch, attack.trigger_fn, attack.target, defence=dfn, seed=seed
    )
    eval_time += time.time() - t0
    eval_count += batch.centers.size
    rows.append(
      {
        'attack': attack_name,
        'defence': dname,
        'paradigm': par,
        'asr': asr,
        'ca': ca,
        'flagged_poison_frac': caught,
      }
    )
  return {
    'rows': rows,
    'attack_seconds': attack.seconds,
    'eval_seconds': eval_time,
    'eval_subgraphs': eval_count,
    'history': {k: [float(h[k]) for h in attack.history] for k in HISTORY_KEYS},
  }
