"""Cora from Planetoid files: `--config.data.data_dir=../shared/data/planetoid`.

Default-scale training on real Cora (2708 nodes, 1433 features)."""

from experiments.graph_attacks.configs import full


def get_config():
  c = full.get_config()
  c.name = 'cora'
  c.data.source = 'planetoid'
  c.data.data_dir = ''
  c.data.name = 'cora'
  c.attack.cpgba.num_triggers = 140
  c.attack.cpgba.max_subgraphs = 8000
  return c
