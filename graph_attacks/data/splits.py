"""The random 20/10/20 split of the UGBA/CP-GBA code and its edge masking."""

from __future__ import annotations

import jraph
import numpy as np

from graph_attacks import graph as graph_lib


def random_split(
  num_nodes: int,
  seed: int,
  train_frac: float = 0.2,
  val_frac: float = 0.1,
  test_frac: float = 0.2,
) -> graph_lib.Split:
  """UGBA's `get_split`: a seeded permutation cut into train/val/test.

  The test set is halved: the first half measures clean accuracy, the second
  the attack success rate. All remaining nodes are `unlabeled`.
  """
  for nm, v in (
    ('train_frac', train_frac),
    ('val_frac', val_frac),
    ('test_frac', test_frac),
  ):
    if not 0.0 < v < 1.0:
      raise ValueError(f'{nm}={v} must lie in (0, 1)')
  if train_frac + val_frac + test_frac > 1.0:
    raise ValueError(
      f'train+val+test fractions sum to {train_frac + val_frac + test_frac} > 1'
    )
  perm = np.random.RandomState(seed).permutation(num_nodes).astype(np.int32)
  n_tr = int(train_frac * num_nodes)
  n_va = int(val_frac * num_nodes)
  n_te = int(test_frac * num_nodes)
  train = perm[:n_tr]
  val = perm[n_tr : n_tr + n_va]
  test = perm[n_tr + n_va : n_tr + n_va + n_te]
  half = test.size // 2
  return graph_lib.Split(
    train=train,
    val=val,
    test=test,
    clean_test=test[:half],
    atk=test[half:],
    unlabeled=perm[n_tr + n_va + n_te :],
  )


def training_graph(
  graph: jraph.GraphsTuple, split: graph_lib.Split
) -> jraph.GraphsTuple:
  """The graph without any edge touching a test node (UGBA's `get_index`).

  Test nodes stay in the graph, isolated; the full graph is used at
  inference, so evaluation is inductive.
  """
  keep = np.setdiff1d(np.arange(graph.nodes.shape[0]), split.test)
  return graph_lib.subgraph_edges(graph, keep)
