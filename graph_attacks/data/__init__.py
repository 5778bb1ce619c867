"""Datasets: Planetoid loader, random split, embedded CSBM (tfds)."""

from graph_attacks.data.csbm import CSBM
from graph_attacks.data.csbm import CSBMParams
from graph_attacks.data.csbm import generate_csbm
from graph_attacks.data.csbm import load_csbm
from graph_attacks.data.planetoid import RestrictedUnpickler
from graph_attacks.data.planetoid import load_planetoid
from graph_attacks.data.planetoid import restricted_load
from graph_attacks.data.splits import random_split
from graph_attacks.data.splits import training_graph

__all__ = [
  'CSBM',
  'CSBMParams',
  'RestrictedUnpickler',
  'generate_csbm',
  'load_csbm',
  'load_planetoid',
  'random_split',
  'restricted_load',
  'training_graph',
]
