"""PiCA: pivot-based credit assignment for RL-trained search agents.

Modules: `retriever` (BM25 / dense, common interface), `data` (Search-R1 /
FlashRAG files), `protocol` (tag parsing, format checks, retrieved-token
mask), `rollout` (batched multi-turn KV-cache agent loop).
"""

from pica import data
from pica import protocol
from pica import retriever
from pica import rollout
from pica.data import load_corpus
from pica.data import load_datasets
from pica.data import load_questions
from pica.protocol import Action
from pica.protocol import ParsedTrajectory
from pica.protocol import Step
from pica.protocol import information_mask
from pica.protocol import parse_action
from pica.protocol import parse_trajectory
from pica.retriever import BM25Retriever
from pica.retriever import DenseRetriever
from pica.retriever import Retriever
from pica.retriever import make_retriever
from pica.rollout import Rollout
from pica.rollout import RolloutConfig

__all__ = [
  'Action',
  'BM25Retriever',
  'DenseRetriever',
  'ParsedTrajectory',
  'Retriever',
  'Rollout',
  'RolloutConfig',
  'Step',
  'data',
  'information_mask',
  'load_corpus',
  'load_datasets',
  'load_questions',
  'make_retriever',
  'parse_action',
  'parse_trajectory',
  'protocol',
  'retriever',
  'rollout',
]
