"""Stage 1: the data, each seed's split and inputs, the pre-trained GNN.

`load_data` reads the dataset named by `config.data`; `prepare_seed` draws
the seed's random split, projects the features (CP-GBA step 0, when
`config.project_dim` > 0), removes the test edges for the training graph
and batches the 2-hop subgraphs of the attack nodes for ASR evaluation;
`pretrain` fits the link-prediction GCN that is both CP-GBA's surrogate
backbone and the GPL victims' frozen encoder.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import jraph
import ml_collections
import numpy as np

from graph_attacks import defences
from graph_attacks import evaluate
from graph_attacks import graph as graph_lib
from graph_attacks import projection
from graph_attacks import prompt as prompt_lib
from graph_attacks.data import csbm
from graph_attacks.data import planetoid
from graph_attacks.data import splits


def load_data(
  cfg: ml_collections.ConfigDict, workdir: str
) -> graph_lib.NodeDataset:
  """Returns the NodeDataset named by `cfg` (the config's `data` field)."""
  if cfg.source == 'csbm':
    return csbm.load_csbm(os.path.join(workdir, 'tfds'), cfg.csbm_config)
  if cfg.source == 'planetoid':
    if not cfg.data_dir:
      raise ValueError("data.source='planetoid' needs --config.data.data_dir")
    return planetoid.load_planetoid(cfg.data_dir, cfg.name)[0]
  raise ValueError(
    f"unknown data.source {cfg.source!r}; allowed: 'csbm', 'planetoid'"
  )


@dataclasses.dataclass
class SeedInputs:
  """What every unit of one seed reads.

  Attributes:
    seed: the seed.
    data: the dataset (features projected when `project_dim` > 0).
    split: the seed's random split.
    train_mask: float `[N]` 1 on V_L.
    train_graph: `data.graph` without the test nodes' edges.
    batch: triggered-ASR batch of the attack nodes' 2-hop subgraphs.
    pretrained: the link-prediction pre-trained GCN.
    cache: in-memory products shared by the seed's units (clean victims
      per defence, defended clean graphs), filled on first use.
  """

  seed: int
  data: graph_lib.NodeDataset
  split: graph_lib.Split
  train_mask: np.ndarray
  train_graph: jraph.GraphsTuple
  batch: evaluate.SubgraphBatch
  pretrained: prompt_lib.PretrainedGCN
  cache: dict = dataclasses.field(default_factory=dict)


def victim_seed(config: ml_collections.ConfigDict, seed: int) -> int:
  """The victims' seed: the attacker's plus `victim.seed_offset`.

  With an offset > 0 the victim's initialisation and dropout masks differ
  from the attacker's surrogate (the attacker knows the architecture
  family, not the weights); 0 reproduces the shared-seed protocol.
  """
  return int(seed) + int(config.victim.seed_offset)


def defence_fn(name: str, cfg: ml_collections.ConfigDict, graph, num_real):
  """Graph-editing defence built on `graph` (None for 'none' and 'rigbd').

  A pytree callable (`jax.tree_util.Partial`) that jitted evaluations take
  as an argument.

  Args:
    name: one of `defences.DEFENCES`.
    cfg: the config's `defence` field.
    graph: the padded training graph (OD fits its threshold here).
    num_real: nodes of `graph` before padding.
  """
  if name == 'prune':
    return defences.prune_fn(cfg.prune_threshold)
  if name == 'od':
    real = np.arange(graph.nodes.shape[0]) < num_real
    od = defences.OutlierDetector(
      graph.nodes,
      real,
      epochs=cfg.od_epochs,
      percentile=cfg.od_percentile,
      max_hidden=cfg.od_max_hidden,
    )
    return od.as_fn()
  return None


def apply_defence(dfn, graph):
  """`dfn(graph)` with NumPy leaves (identity when `dfn` is None)."""
  if dfn is None:
    return graph
  return jax.tree.map(np.asarray, dfn(jax.tree.map(jnp.asarray, graph)))


def project(
  config: ml_collections.ConfigDict,
  data: graph_lib.NodeDataset,
  split: graph_lib.Split,
  seed: int,
) -> graph_lib.NodeDataset:
  """CP-GBA step 0 on the training graph (identity if `project_dim` = 0)."""
  if not config.project_dim:
    return data
  train_mask = split.mask('train', data.num_nodes).astype(np.float32)
  proj = projection.project_features(
    splits.training_graph(data.graph, split),
    data.labels,
    train_mask,
    data.num_classes,
    dim=config.project_dim,
    epochs=config.project_epochs,
    seed=seed,
  )
  return graph_lib.NodeDataset(
    data.graph._replace(nodes=proj.nodes),
    data.labels,
    data.num_classes,
    data.name,
  )


def pretrain(
  cfg: ml_collections.ConfigDict, train_graph: jraph.GraphsTuple, seed: int
) -> prompt_lib.PretrainedGCN:
  """The link-prediction pre-trained GCN (`cfg` is the config's `pretrain`)."""
  return prompt_lib.pretrain_edge_prediction(
    train_graph,
    hidden=cfg.hidden,
    n_layers=cfg.n_layers,
    epochs=cfg.epochs,
    learning_rate=cfg.learning_rate,
    seed=seed,
  )


def prepare_seed(
  config: ml_collections.ConfigDict, data: graph_lib.NodeDataset, seed: int
) -> SeedInputs:
  """Split, projection, training graph, pre-trained GNN and ASR batch."""
  split = splits.random_split(data.num_nodes, seed)
  seed_data = project(config, data, split, seed)
  train_graph = splits.training_graph(seed_data.graph, split)
  pretrained = pretrain(config.pretrain, train_graph, seed)
  return SeedInputs(
    seed=seed,
    data=seed_data,
    split=split,
    train_mask=split.mask('train', data.num_nodes).astype(np.float32),
    train_graph=train_graph,
    batch=evaluate.subgraph_batch(seed_data.graph, split.atk),
    pretrained=pretrained,
  )


def padded(graph, labels, mask):
  """The graph padded to its bucket, labels and mask padded to match."""
  g = graph_lib.pad_to_bucket(jax.tree.map(np.asarray, graph))
  n = g.nodes.shape[0]
  return g, graph_lib.pad_rows(labels, n), graph_lib.pad_rows(mask, n)
