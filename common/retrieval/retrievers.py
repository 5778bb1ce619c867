"""Retrievers over Search-R1 / FlashRAG `{"id", "contents"}` corpora.

Every retriever implements `Retriever`: `search(query, k)` returns the `k`
best documents (the corpus dicts themselves), best first, and
`batch_search(queries, k)` does it for a list of queries (Search-R1's
retrieval server answers a batch per turn). Ties go to the lower corpus
position, so results are deterministic.

* `BM25Retriever`: Okapi BM25 (the default retriever; Search-R1 ships a
  pyserini BM25 server next to its dense E5 one). Words are the lower-cased
  alphanumeric runs of the text (`common.synthetic.lexical_search.words`).
  With `N` documents, `df(w)` documents containing `w`, term frequency
  `tf(w, d)`, document length `|d|` (words) and mean length `avgdl`:

      idf(w)   = log(1 + (N - df(w) + 0.5) / (df(w) + 0.5))
      score(q, d) = sum_{w in q} idf(w) * tf(w, d) * (k1 + 1)
                    / (tf(w, d) + k1 * (1 - b + b * |d| / avgdl))

  (the non-negative Lucene/pyserini idf; a word repeated in the query
  counts once per occurrence, as in Lucene's bag-of-words query).
* `DenseRetriever`: inner product of L2-normalised embeddings from any
  `encode(texts) -> [N, D]` function (e.g. a sentence encoder); the corpus
  is encoded once.

PiCA's search agent and E3-TIR's retrieval tool both use these.
"""

from __future__ import annotations

import abc
import collections
import math
from collections.abc import Callable
from collections.abc import Sequence

import numpy as np

from common.synthetic.lexical_search import words


def _check_documents(documents: Sequence[dict], who: str) -> list[dict]:
  docs = list(documents)
  if not docs:
    raise ValueError(f'{who} needs at least one document')
  for i, d in enumerate(docs):
    if not isinstance(d, dict) or 'id' not in d or 'contents' not in d:
      got = sorted(d) if isinstance(d, dict) else type(d).__name__
      raise ValueError(
        f'{who}: documents[{i}] must be a dict with keys "id" and '
        f'"contents"; got {got}'
      )
    if not isinstance(d['contents'], str):
      raise ValueError(f'{who}: documents[{i}]["contents"] must be a str')
  return docs


def _check_k(k: int) -> int:
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f'k must be an int >= 1, got {k!r}')
  return int(k)


class Retriever(abc.ABC):
  """Common interface: top-k documents for a query.

  Subclasses set `self.documents` and implement `scores(query) -> [N]`.
  """

  documents: list[dict]

  @abc.abstractmethod
  def scores(self, query: str) -> np.ndarray:
    """`[N]` float64 relevance of every document to `query`."""

  def search(self, query: str, k: int = 3) -> list[dict]:
    """The `k` best documents for `query` (fewer if the corpus is small)."""
    k = _check_k(k)
    if not isinstance(query, str):
      raise TypeError(f'query must be a str, got {type(query).__name__}')
    s = self.scores(query)
    order = np.lexsort((np.arange(len(s)), -s))
    return [self.documents[i] for i in order[:k]]

  def batch_search(self, queries: Sequence[str], k: int = 3) -> list[list]:
    """`search` for each query; returns one ranked list per query."""
    if isinstance(queries, str):
      raise TypeError('batch_search takes a list of queries, not one str')
    return [self.search(q, k) for q in queries]

  def __len__(self) -> int:
    return len(self.documents)


class BM25Retriever(Retriever):
  """Okapi BM25 over `{"id", "contents"}` documents (formula in module doc).

  Attributes:
    k1: term-frequency saturation (>= 0); 0 ignores tf.
    b: length normalisation in [0, 1]; 0 ignores document length.
  """

  def __init__(self, documents: Sequence[dict], k1: float = 0.9, b=0.4):
    """Indexes `documents`.

    Args:
      documents: `{"id", "contents"}` dicts.
      k1: BM25 k1 (pyserini's default 0.9).
      b: BM25 b (pyserini's default 0.4).
    """
    if not (math.isfinite(k1) and k1 >= 0):
      raise ValueError(f'BM25 k1 must be finite and >= 0, got {k1}')
    if not (math.isfinite(b) and 0 <= b <= 1):
      raise ValueError(f'BM25 b must be in [0, 1], got {b}')
    self.documents = _check_documents(documents, 'BM25Retriever')
    self.k1, self.b = float(k1), float(b)
    self._postings: dict[str, list[tuple[int, int]]] = {}
    lengths = []
    for i, d in enumerate(self.documents):
      counts = collections.Counter(words(d['contents']))
      lengths.append(sum(counts.values()))
      for w, tf in counts.items():
        self._postings.setdefault(w, []).append((i, tf))
    self.doc_lengths = np.asarray(lengths, np.float64)
    n = len(self.documents)
    self.avgdl = max(float(self.doc_lengths.mean()), 1e-9)
    self.idf = {
      w: math.log(1.0 + (n - len(p) + 0.5) / (len(p) + 0.5))
      for w, p in self._postings.items()
    }
    self._norm = self.k1 * (
      1.0 - self.b + self.b * self.doc_lengths / self.avgdl
    )

  def scores(self, query: str) -> np.ndarray:
    out = np.zeros(len(self.documents))
    for w in words(query):
      for i, tf in self._postings.get(w, ()):
        out[i] += self.idf[w] * tf * (self.k1 + 1.0) / (tf + self._norm[i])
    return out


class DenseRetriever(Retriever):
  """Inner-product search over L2-normalised embeddings.

  `encode(texts) -> [N, D]` embeds queries and passages; optional prefixes
  reproduce E5's "query: " / "passage: " convention.
  """

  def __init__(
    self,
    documents: Sequence[dict],
    encode: Callable[[list[str]], np.ndarray],
    query_prefix: str = '',
    passage_prefix: str = '',
    batch_size: int = 256,
  ):
    self.documents = _check_documents(documents, 'DenseRetriever')
    if not callable(encode):
      raise TypeError('DenseRetriever needs a callable encode(texts)')
    if batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    self.encode, self.query_prefix = encode, query_prefix
    texts = [passage_prefix + d['contents'] for d in self.documents]
    chunks = [
      self._embed(texts[i : i + batch_size])
      for i in range(0, len(texts), batch_size)
    ]
    self.embeddings = np.concatenate(chunks, axis=0)  # [N, D]

  def _embed(self, texts: list[str]) -> np.ndarray:
    e = np.asarray(self.encode(texts), np.float64)
    if e.ndim != 2 or e.shape[0] != len(texts):
      raise ValueError(
        f'encode must return [len(texts), D] = [{len(texts)}, D]; got '
        f'shape {e.shape}'
      )
    if not np.all(np.isfinite(e)):
      raise ValueError('encode returned non-finite embeddings')
    norm = np.linalg.norm(e, axis=1, keepdims=True)
    return e / np.maximum(norm, 1e-12)

  def scores(self, query: str) -> np.ndarray:
    q = self._embed([self.query_prefix + query])[0]
    if q.shape[0] != self.embeddings.shape[1]:
      raise ValueError(
        f'query embedding has dim {q.shape[0]}, corpus has '
        f'{self.embeddings.shape[1]}'
      )
    return self.embeddings @ q


RETRIEVERS = ('bm25', 'dense')


def make_retriever(name: str, documents: Sequence[dict], **kwargs):
  """`'bm25'` or `'dense'` (needs `encode=`) over `documents`."""
  if name == 'bm25':
    return BM25Retriever(documents, **kwargs)
  if name == 'dense':
    return DenseRetriever(documents, **kwargs)
  raise ValueError(f'unknown retriever {name!r}; known: {RETRIEVERS}')
