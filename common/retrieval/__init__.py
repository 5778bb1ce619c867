"""Retrievers over `{"id", "contents"}` corpora (BM25, dense).

Shared by the search-agent packages (PiCA's search rollout, E3-TIR's
retrieval tool). `load_sentence_encoder` gives the dense retriever real
embeddings offline (a JAX BERT, e.g. all-MiniLM-L6-v2 from
`installed_minilm_dir()`).
"""

from common.retrieval.retrievers import RETRIEVERS
from common.retrieval.retrievers import BM25Retriever
from common.retrieval.retrievers import DenseRetriever
from common.retrieval.retrievers import Retriever
from common.retrieval.retrievers import make_retriever
from common.retrieval.sentence_encoder import SentenceEncoder
from common.retrieval.sentence_encoder import installed_minilm_dir
from common.retrieval.sentence_encoder import load_sentence_encoder

__all__ = [
  'RETRIEVERS',
  'BM25Retriever',
  'DenseRetriever',
  'Retriever',
  'SentenceEncoder',
  'installed_minilm_dir',
  'load_sentence_encoder',
  'make_retriever',
]
