"""Stage 2: clean-victim rows, the no-attack reference of every paradigm.

One unit per (seed, paradigm): the victim is trained on the clean training
graph and its accuracy is measured on the clean-test half of the test
nodes. It also gives the no-trigger rate of the target class, the share of
attack nodes the clean victim already predicts as y_t (what an attack's ASR
is compared with).
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from graph_attacks import evaluate
from graph_attacks import victims
from graph_attacks.pipeline import prepare


def target_rate(logits_fn, batch: evaluate.SubgraphBatch, target: int) -> float:
  """Fraction of the batch's (untriggered) centres predicted as `target`."""
  logits = logits_fn(batch.graph)
  pred = jnp.argmax(logits[jnp.asarray(batch.centers)], -1)
  return float((pred == target).mean())


def clean_row(
  config: ml_collections.ConfigDict, inputs: prepare.SeedInputs, paradigm: str
) -> dict:
  """Trains a clean `paradigm` victim; returns its row.

  Returns:
    `{'paradigm', 'ca', 'target_rate'}`: clean accuracy on the clean-test
    nodes, and the no-trigger rate of `config.attack.target` on the attack
    nodes' 2-hop subgraphs (the chance level of ASR for this victim).
  """
  data = inputs.data
  g, y, m = prepare.padded(inputs.train_graph, data.labels, inputs.train_mask)
  fn = victims.fit_victim(
    paradigm,
    g,
    y,
    m,
    data.num_classes,
    config.victim,
    num_real_nodes=data.num_nodes,
    pretrained=inputs.pretrained,
    seed=inputs.seed,
  )
  return {
    'paradigm': paradigm,
    'ca': evaluate.accuracy(
      fn, data.graph, data.labels, inputs.split.clean_test
    ),
    'target_rate': target_rate(fn, inputs.batch, int(config.attack.target)),
  }
