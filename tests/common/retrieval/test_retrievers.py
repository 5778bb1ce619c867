"""BM25 / dense retrievers: hand-computed scores, ranking, errors."""

import math

import numpy as np
import pytest

from common import retrieval as R

DOCS = [
  {'id': 'd0', 'contents': 'a b'},
  {'id': 'd1', 'contents': 'b c c'},
  {'id': 'd2', 'contents': 'd'},
]


def test_bm25_scores_hand_computed():
  # N=3, lengths 2/3/1, avgdl=2; df: a=1, b=2, c=1, d=1.
  r = R.BM25Retriever(DOCS, k1=1.2, b=0.75)
  idf_b = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))  # log 1.6
  idf_c = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))  # log 8/3
  norm0 = 1.2 * (0.25 + 0.75 * 2 / 2)  # 1.2
  norm1 = 1.2 * (0.25 + 0.75 * 3 / 2)  # 1.65
  want = [
    idf_b * 1 * 2.2 / (1 + norm0),
    idf_b * 1 * 2.2 / (1 + norm1) + idf_c * 2 * 2.2 / (2 + norm1),
    0.0,
  ]
  np.testing.assert_allclose(r.scores('B, c?'), want, rtol=1e-12)
  assert [d['id'] for d in r.search('b c', k=2)] == ['d1', 'd0']


def test_bm25_k1_zero_b_zero_limits():
  # k1 = 0: the score is the idf sum of matched words regardless of tf.
  r = R.BM25Retriever(DOCS, k1=0.0, b=0.0)
  idf_c = math.log(1 + 2.5 / 1.5)
  np.testing.assert_allclose(r.scores('c'), [0, idf_c, 0])
  # repeated query words count once per occurrence
  np.testing.assert_allclose(r.scores('c c'), [0, 2 * idf_c, 0])


def test_search_ties_k_and_batch():
  r = R.BM25Retriever(DOCS)
  # no match: all zeros -> corpus order
  assert [d['id'] for d in r.search('zzz', k=5)] == ['d0', 'd1', 'd2']
  out = r.batch_search(['a', 'd'], k=1)
  assert [o[0]['id'] for o in out] == ['d0', 'd2']
  assert out[0][0] is DOCS[0]  # the corpus dicts themselves
  with pytest.raises(ValueError, match='k must be'):
    r.search('a', k=0)
  with pytest.raises(TypeError, match='list of queries'):
    r.batch_search('a b')


@pytest.mark.parametrize(
  'docs, kwargs, match',
  [
    ([], {}, 'at least one document'),
    ([{'id': 'x'}], {}, '"contents"'),
    (DOCS, {'k1': -1.0}, 'k1'),
    (DOCS, {'b': 1.5}, r'b must be in \[0, 1\]'),
  ],
)
def test_bm25_bad_input(docs, kwargs, match):
  with pytest.raises(ValueError, match=match):
    R.BM25Retriever(docs, **kwargs)


def _bag_encoder(texts):
  vocab = ['a', 'b', 'c', 'd']
  return np.array([[t.split().count(w) for w in vocab] for t in texts], float)


def test_dense_cosine_scores():
  r = R.DenseRetriever(DOCS, _bag_encoder)
  # doc vectors: [1,1,0,0]/sqrt2, [0,1,2,0]/sqrt5, [0,0,0,1]
  np.testing.assert_allclose(
    r.scores('b'), [1 / math.sqrt(2), 1 / math.sqrt(5), 0.0]
  )
  assert r.search('c', 1)[0]['id'] == 'd1'
  with pytest.raises(ValueError, match='encode must return'):
    R.DenseRetriever(DOCS, lambda t: np.zeros((1, 3)))
  with pytest.raises(ValueError, match='non-finite'):
    R.DenseRetriever(DOCS, lambda t: np.full((len(t), 2), np.nan))


def test_make_retriever():
  assert isinstance(R.make_retriever('bm25', DOCS), R.BM25Retriever)
  with pytest.raises(ValueError, match="known: \\('bm25', 'dense'\\)"):
    R.make_retriever('splade', DOCS)
