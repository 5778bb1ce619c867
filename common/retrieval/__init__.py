"""Retrievers over `{"id", "contents"}` corpora (BM25, dense).

Shared by the search-agent packages (PiCA's search rollout, E3-TIR's
retrieval tool).
"""

from common.retrieval.retrievers import RETRIEVERS
from common.retrieval.retrievers import BM25Retriever
from common.retrieval.retrievers import DenseRetriever
from common.retrieval.retrievers import Retriever
from common.retrieval.retrievers import make_retriever

__all__ = [
  'RETRIEVERS',
  'BM25Retriever',
  'DenseRetriever',
  'Retriever',
  'make_retriever',
]
