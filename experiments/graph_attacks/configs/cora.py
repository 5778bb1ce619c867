"""Cora from Planetoid files (`planetoid.py`).

  --config.data.data_dir=../shared/data/planetoid

The settings of `planetoid.DATASETS['cora']` on top of `full`, 3 seeds."""

from experiments.graph_attacks.configs import planetoid


def get_config():
  return planetoid.get_config('cora')
