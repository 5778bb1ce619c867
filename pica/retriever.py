"""PiCA's retrievers: the shared `common.retrieval` ones, re-exported.

BM25 (the default, as Search-R1's pyserini server) and dense inner-product
retrieval over Search-R1 / FlashRAG `{"id", "contents"}` corpora; the
formulas are in `common/retrieval/retrievers.py`.
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
