"""Stage 3: one (seed, attack) unit, its triggers and every victim.

The attack's triggers are trained once on the attacker's training graph;
the training and full graphs are poisoned (triggers on V_P, V_P relabelled
y_t); then, for every defence, each paradigm's victim is trained on the
(defended) poisoned graph and scored: CA on the clean-test nodes, overall
ASR on the triggered 2-hop subgraphs of the attack nodes, beside the same
triggers' ASR on the clean victim of that paradigm (the control).
"""

from __future__ import annotations

import time

import ml_collections
import numpy as np

from graph_attacks import attacks as attacks_lib
from graph_attacks import evaluate
from graph_attacks import graph as graph_lib
from graph_attacks import victims
from graph_attacks.pipeline import clean
from graph_attacks.pipeline import prepare

# Per-epoch bi-level metrics kept in a unit's result (for the curves).
HISTORY_KEYS = ('outer_asr', 'outer_loss')


# Kept here for callers of the earlier location.
defence_fn = prepare.defence_fn


def victim_runs(config: ml_collections.ConfigDict, attack_name=None):
  """The (defence, paradigm) pairs a unit trains, in order.

  A backbone attack (CrossBA) reaches only the prompt paradigms, the ones
  that use the pre-trained GNN; they are its only victims, so they run
  under every defence whatever `defence_paradigms` says (RIGBD, which
  retrains a supervised model, excepted).
  """
  backbone = attack_name in attacks_lib.BACKBONE_ATTACKS
  for dname in config.defences:
    for par in config.paradigms:
      if backbone and victims.paradigm_family(par) != 'GPL':
        continue
      if (
        dname != 'none' and par not in config.defence_paradigms and not backbone
      ):
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

  Each row also holds the control: the same triggers applied to the clean
  victim of that paradigm (`clean.clean_victim`, trained on the clean
  graph, defended the same way), whose ASR is the evasion floor a
  backdoor's ASR is measured against (lift = asr - clean_asr).

  Returns:
    `{'rows': [{'attack', 'defence', 'paradigm', 'asr', 'flip_asr',
    'clean_asr', 'clean_flip_asr', 'ca', 'clean_ca',
    'flagged_poison_frac'}], 'attack_seconds', 'eval_seconds',
    'eval_subgraphs', 'history': {key: [per epoch]}, 'selected'}`.
    `flip_*` count only the attack nodes whose true class is not the
    target.
  """
  data, split, seed = inputs.data, inputs.split, inputs.seed
  labels, c = data.labels, data.num_classes
  pretrained, batch = inputs.pretrained, inputs.batch
  vseed = prepare.victim_seed(config, seed)
  atk_y = clean.atk_labels(inputs)
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
  if attack.backbone is not None:  # the user downloads the backdoored GNN
    pretrained = attack.backbone
  for dname, par in victim_runs(config, attack_name):
    if dname not in built:
      dfn = prepare.defence_fn(dname, config.defence, g_p, num_real)
      built[dname] = (
        dfn,
        prepare.apply_defence(dfn, g_p),
        prepare.apply_defence(dfn, full_p),
      )
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
        seed=vseed,
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
        seed=vseed,
      )
      caught = None
    ca = evaluate.accuracy(fn, g_full, labels, split.clean_test)
    clean_fn, clean_dfn, clean_full = clean.clean_victim(
      config, inputs, par, dname
    )
    t0 = time.time()
    pred = evaluate.triggered_predictions(
      fn, batch, attack.trigger_fn, defence=dfn, seed=seed
    )
    pred_clean = evaluate.triggered_predictions(
      clean_fn, batch, attack.trigger_fn, defence=clean_dfn, seed=seed
    )
    eval_time += time.time() - t0
    eval_count += 2 * batch.centers.size
    rates = evaluate.success_rates(pred, atk_y, attack.target)
    control = evaluate.success_rates(pred_clean, atk_y, attack.target)
    rows.append(
      {
        'attack': attack_name,
        'defence': dname,
        'paradigm': par,
        'asr': rates['asr'],
        'flip_asr': rates['flip_asr'],
        'clean_asr': control['asr'],
        'clean_flip_asr': control['flip_asr'],
        'ca': ca,
        'clean_ca': evaluate.accuracy(
          clean_fn, clean_full, labels, split.clean_test
        ),
        'flagged_poison_frac': caught,
      }
    )
  return {
    'rows': rows,
    'attack_seconds': attack.seconds,
    'eval_seconds': eval_time,
    'eval_subgraphs': eval_count,
    'history': {
      k: [float(h[k]) for h in attack.history if k in h] for k in HISTORY_KEYS
    },
    # CP-GBA's model selection: the kept epoch and its validation ASR.
    'selected': attack.selected,
  }
