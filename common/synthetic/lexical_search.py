"""A small lexical retriever over `{"id", "contents"}` documents.

Scores a document by the summed inverse document frequency of the distinct
query words it contains (case-insensitive word match); ties go to the
lower corpus position. It is deterministic and dependency-free, meant for
tests and golden traces; the project's BM25 retriever lives in `pica/`.
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Sequence

import numpy as np

_WORD_RE = re.compile(r'[^\W_]+')


def words(text: str) -> list[str]:
  """Lower-cased alphanumeric words of `text`."""
  return _WORD_RE.findall(text.lower())


class LexicalIndex:
  """IDF-weighted word-overlap search over a document list."""

  def __init__(self, documents: Sequence[dict]):
    """Indexes `documents` (`{"id", "contents"}` dicts)."""
    if not documents:
      raise ValueError('LexicalIndex needs at least one document')
    self.documents = list(documents)
    self._postings: dict[str, list[int]] = collections.defaultdict(list)
    for i, d in enumerate(self.documents):
      if 'contents' not in d or 'id' not in d:
        raise ValueError(f'documents[{i}] needs keys id and contents')
      for w in set(words(d['contents'])):
        self._postings[w].append(i)
    n = len(self.documents)
    self._idf = {
      w: math.log((n + 1) / (len(p) + 0.5)) for w, p in self._postings.items()
    }

  def scores(self, query: str) -> np.ndarray:
    """`[N]` float scores of every document for `query`."""
    out = np.zeros(len(self.documents))
    for w in set(words(query)):
      for i in self._postings.get(w, ()):
        out[i] += self._idf[w]
    return out

  def search(self, query: str, k: int = 3) -> list[dict]:
    """The `k` best documents for `query`, best first."""
    if k < 1:
      raise ValueError(f'k must be >= 1, got {k}')
    s = self.scores(query)
    order = np.lexsort((np.arange(len(s)), -s))
    return [self.documents[i] for i in order[:k]]
