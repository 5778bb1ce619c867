"""PiCA: pivot-based credit assignment for RL-trained search agents."""

from pica import data
from pica import retriever
from pica.data import load_corpus
from pica.data import load_datasets
from pica.data import load_questions
from pica.retriever import BM25Retriever
from pica.retriever import DenseRetriever
from pica.retriever import Retriever
from pica.retriever import make_retriever

__all__ = [
  'BM25Retriever',
  'DenseRetriever',
  'Retriever',
  'data',
  'load_corpus',
  'load_datasets',
  'load_questions',
  'make_retriever',
  'retriever',
]
