"""Stage 2: clean victims, the no-attack reference of every paradigm.

A clean victim is trained on the clean (unpoisoned) training graph, with
the victims' seed (`prepare.victim_seed`). Per seed it is trained once and
kept in `SeedInputs.cache`: the clean unit (`clean_row`) records its
accuracy and no-trigger target rate, and every attack unit applies its
triggers to the same victim (the evasion floor: what the trigger does to a
model that never saw a poisoned node). Under the Prune and OD defences the
clean victim is trained on the defended clean graph and its test subgraphs
are defended the same way; RIGBD's control is the undefended clean victim.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from graph_attacks import evaluate
from graph_attacks import graph as graph_lib
from graph_attacks import victims
from graph_attacks.pipeline import prepare

# Defences whose clean control is trained on the defended clean graph.
GRAPH_DEFENCES = ('prune', 'od')


def target_rate(logits_fn, batch: evaluate.SubgraphBatch, target: int) -> float:
  """Fraction of the batch's (untriggered) centres predicted as `target`."""
  pred = evaluate.triggered_predictions(logits_fn, batch, None)
  return float((pred == target).mean())


def clean_defence(
  config: ml_collections.ConfigDict, inputs: prepare.SeedInputs, defence: str
):
  """`(dfn, train graph, labels, mask, full graph)` of the clean graph.

  `dfn` is the test-time defence fitted on the clean training graph (None
  for 'none'); the two graphs are padded and defended. Cached per seed.
  """
  key = ('clean_defence', defence)
  if key not in inputs.cache:
    data = inputs.data
    g, y, m = prepare.padded(inputs.train_graph, data.labels, inputs.train_mask)
    dfn = None
    if defence in GRAPH_DEFENCES:
      dfn = prepare.defence_fn(defence, config.defence, g, data.num_nodes)
    full = graph_lib.pad_to_bucket(data.graph)
    inputs.cache[key] = (
      dfn,
      prepare.apply_defence(dfn, g),
      y,
      m,
      prepare.apply_defence(dfn, full),
    )
  return inputs.cache[key]


def clean_victim(
  config: ml_collections.ConfigDict,
  inputs: prepare.SeedInputs,
  paradigm: str,
  defence: str = 'none',
):
  """`(logits_fn, dfn, full graph)`: the clean `paradigm` victim (cached).

  `defence` in `GRAPH_DEFENCES` trains it on the defended clean graph;
  any other (none, rigbd) gives the undefended clean victim.
  """
  if defence not in GRAPH_DEFENCES:
    defence = 'none'
  key = ('clean_victim', defence, paradigm)
  if key not in inputs.cache:
    dfn, g, y, m, full = clean_defence(config, inputs, defence)
    fn = victims.fit_victim(
      paradigm,
      g,
      y,
      m,
      inputs.data.num_classes,
      config.victim,
      num_real_nodes=inputs.data.num_nodes,
      pretrained=inputs.pretrained,
      seed=prepare.victim_seed(config, inputs.seed),
    )
    inputs.cache[key] = (fn, dfn, full)
  return inputs.cache[key]


def clean_row(
  config: ml_collections.ConfigDict, inputs: prepare.SeedInputs, paradigm: str
) -> dict:
  """Trains (or reuses) the clean `paradigm` victim; returns its row.

  Returns:
    `{'paradigm', 'ca', 'target_rate'}`: clean accuracy on the clean-test
    nodes, and the no-trigger rate of `config.attack.target` on the attack
    nodes' 2-hop subgraphs (the chance level of ASR for this victim).
  """
  fn, _, full = clean_victim(config, inputs, paradigm)
  return {
    'paradigm': paradigm,
    'ca': evaluate.accuracy(
      fn, full, inputs.data.labels, inputs.split.clean_test
    ),
    'target_rate': target_rate(fn, inputs.batch, int(config.attack.target)),
  }


def atk_labels(inputs: prepare.SeedInputs) -> np.ndarray:
  """True labels of the attack nodes, in `inputs.batch` order."""
  return np.asarray(inputs.data.labels)[inputs.batch.nodes]
