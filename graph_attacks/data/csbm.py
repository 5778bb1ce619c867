"""Seeded contextual stochastic block model with Cora-like statistics.

A degree-corrected SBM draws the edges: each edge picks a first endpoint with
probability proportional to a Pareto weight (heavy-tailed degrees like a
citation graph) and, with probability `homophily`, a second endpoint of the
same class, else of another class. Features are sparse bag-of-words: each
class has its own topic over the vocabulary; a node draws about
`words_per_node` words, each from its class topic with probability
`topic_purity` and from a shared background otherwise; features are binary
word indicators, row-normalised at load time.

`CSBM` wraps the generator as a tfds builder (array_record, one example per
node) so experiments read the embedded graph through tfds like real data.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from common.synthetic import tfds_builders
from graph_attacks import graph as graph_lib


@dataclasses.dataclass(frozen=True)
class CSBMParams:
  """Generator parameters (defaults: Cora's size and statistics)."""

  num_nodes: int = 2708
  num_classes: int = 7
  num_features: int = 1433
  avg_degree: float = 3.9
  homophily: float = 0.81
  words_per_node: float = 18.0
  topic_purity: float = 0.4
  topic_words: int = 150
  degree_exponent: float = 2.5
  seed: int = 0

  def validate(self):
    checks = (
      ('num_nodes', self.num_nodes >= 2 * self.num_classes, '>= 2*classes'),
      ('num_classes', self.num_classes >= 2, '>= 2'),
      ('num_features', self.num_features >= self.topic_words, '>= topic_words'),
      ('avg_degree', self.avg_degree > 0, '> 0'),
      ('homophily', 0.0 <= self.homophily <= 1.0, 'in [0, 1]'),
      ('words_per_node', self.words_per_node > 0, '> 0'),
      ('topic_purity', 0.0 <= self.topic_purity <= 1.0, 'in [0, 1]'),
      ('topic_words', self.topic_words >= 1, '>= 1'),
      ('degree_exponent', self.degree_exponent > 1.0, '> 1'),
    )
    for name, ok, allowed in checks:
      if not ok:
        raise ValueError(
          f'CSBM {name}={getattr(self, name)} is invalid; must be {allowed}'
        )


def generate_csbm(
  params: CSBMParams, normalize: bool = True
) -> graph_lib.NodeDataset:
  """Draws one graph; the same `params` always give the same graph."""
  params.validate()
  rng = np.random.RandomState(params.seed)
  n, c, f = params.num_nodes, params.num_classes, params.num_features
  # Unequal class sizes like Cora (largest class about 30%).
  props = rng.dirichlet(np.full(c, 4.0))
  labels = np.sort(rng.choice(c, size=n, p=props))
  labels[:c] = np.arange(c)  # every class present
  labels = labels[rng.permutation(n)].astype(np.int32)
  members = [np.flatnonzero(labels == k) for k in range(c)]

  theta = rng.pareto(params.degree_exponent - 1.0, n) + 1.0
  p_node = theta / theta.sum()
  m = int(round(params.avg_degree * n / 2))
  src = rng.choice(n, size=2 * m, p=p_node)
  same = rng.rand(2 * m) < params.homophily
  dst = np.empty_like(src)
  for k in range(c):
    w = theta[members[k]] / theta[members[k]].sum()
    sel = (labels[src] == k) & same
    dst[sel] = rng.choice(members[k], size=int(sel.sum()), p=w)
    others = np.flatnonzero(labels != k)
    wo = theta[others] / theta[others].sum()
    sel = (labels[src] == k) & ~same
    dst[sel] = rng.choice(others, size=int(sel.sum()), p=wo)
  senders, receivers = graph_lib.undirected_edges(src, dst, n)
  # Keep about avg_degree * n directed edges after de-duplication.
  order = rng.permutation(senders.size // 2)
  forward = np.flatnonzero(senders < receivers)[order][:m]
  senders, receivers = graph_lib.undirected_edges(
    senders[forward], receivers[forward], n
  )

  topics = np.stack(
    [rng.choice(f, params.topic_words, replace=False) for _ in range(c)]
  )
  counts = np.maximum(1, rng.poisson(params.words_per_node, n))
  features = np.zeros((n, f), np.float32)
  for i in range(n):
    k = counts[i]
    from_topic = rng.rand(k) < params.topic_purity
    words = np.where(
      from_topic,
      topics[labels[i]][rng.randint(params.topic_words, size=k)],
      rng.randint(f, size=k),
    )
    features[i, words] = 1.0
  if normalize:
    features = graph_lib.row_normalize(features)
  return graph_lib.NodeDataset(
    graph=graph_lib.make_graph(features, senders, receivers),
    labels=labels,
    num_classes=c,
    name=f'csbm_{params.seed}',
  )


class CSBMConfig(tfds.core.BuilderConfig):
  """A named parameter set of the generator."""

  def __init__(self, *, params: CSBMParams, **kwargs):
    super().__init__(version=tfds.core.Version('1.0.0'), **kwargs)
    self.params = params


class CSBM(tfds.core.GeneratorBasedBuilder):
  """The embedded CSBM graph; one example per node.

  Each example holds the node id, its label, its word indices (the nonzero
  feature columns) and its neighbours.
  """

  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [
    CSBMConfig(
      name='cora_like',
      params=CSBMParams(),
      description='Cora size: 2708 nodes, 7 classes, 1433 words.',
    ),
    CSBMConfig(
      name='small',
      params=CSBMParams(num_nodes=1200, num_features=500, topic_words=60),
      description='1200 nodes, 7 classes, 500 words (default experiment).',
    ),
    CSBMConfig(
      name='tiny',
      params=CSBMParams(
        num_nodes=240,
        num_classes=4,
        num_features=64,
        topic_words=12,
        words_per_node=8.0,
      ),
      description='240 nodes, 4 classes, 64 words (tests).',
    ),
  ]

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      description='Seeded contextual SBM with Cora-like statistics.',
      features=tfds.features.FeaturesDict(
        {
          'node': np.int32,
          'label': np.int32,
          'words': tfds.features.Tensor(shape=(None,), dtype=np.int32),
          'neighbors': tfds.features.Tensor(shape=(None,), dtype=np.int32),
        }
      ),
      metadata=tfds.core.MetadataDict(
        num_classes=self.builder_config.params.num_classes,
        num_features=self.builder_config.params.num_features,
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    ds = generate_csbm(self.builder_config.params, normalize=False)
    adj = graph_lib.adjacency_lists(ds.graph)
    for i in range(ds.num_nodes):
      yield (
        i,
        {
          'node': i,
          'label': int(ds.labels[i]),
          'words': np.flatnonzero(ds.graph.nodes[i]).astype(np.int32),
          'neighbors': adj[i].astype(np.int32),
        },
      )


def load_csbm(
  data_dir: str, config_name: str = 'small', normalize: bool = True
) -> graph_lib.NodeDataset:
  """Prepares (once) and reads the CSBM tfds dataset into a NodeDataset."""
  names = [c.name for c in CSBM.BUILDER_CONFIGS]
  if config_name not in names:
    raise ValueError(f'unknown CSBM config {config_name!r}; allowed: {names}')
  builder = CSBM(
    config=config_name, data_dir=data_dir, file_format='array_record'
  )
  tfds_builders.prepare(builder)
  source = builder.as_data_source(split='train')
  params = builder.builder_config.params
  n, f = params.num_nodes, params.num_features
  features = np.zeros((n, f), np.float32)
  labels = np.zeros(n, np.int32)
  s, r = [], []
  for i in range(len(source)):
    ex = source[i]
    v = int(ex['node'])
    labels[v] = ex['label']
    features[v, ex['words']] = 1.0
    s.append(np.full(len(ex['neighbors']), v, np.int32))
    r.append(np.asarray(ex['neighbors'], np.int32))
  senders, receivers = graph_lib.undirected_edges(
    np.concatenate(s), np.concatenate(r), n
  )
  if normalize:
    features = graph_lib.row_normalize(features)
  return graph_lib.NodeDataset(
    graph=graph_lib.make_graph(features, senders, receivers),
    labels=labels,
    num_classes=params.num_classes,
    name=f'csbm_{config_name}',
  )
