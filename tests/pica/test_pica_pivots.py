"""Pivot annotation from golden decompositions."""

import numpy as np
import pytest

from pica import pivots

DEC = [
  {'query': 'who founded Thanu', 'answer': 'Kalo Varen', 'doc_id': 'a'},
  {'query': 'where was Kalo Varen born', 'answer': 'Dorvik', 'doc_id': 'b'},
]


def test_golden_path_success():
  a = pivots.annotate(DEC, True, retrieved_ids=[['x', 'a'], ['b']])
  assert a == pivots.PivotAnnotation([True, True, True], None, 2)


def test_detour_then_recover_failed():
  # step 0 misses hop 0, step 1 finds it, step 2 finds hop 1, wrong answer
  a = pivots.annotate(DEC, False, retrieved_ids=[['b'], ['a'], ['b']])
  assert a.labels == [False, True, True, False]
  assert a.z == 0 and a.hops_covered == 2


def test_all_pivots_but_wrong_answer_z_is_end():
  a = pivots.annotate(DEC, False, retrieved_ids=[['a'], ['b']])
  assert a.labels == [True, True, False] and a.z == 2
  # extra searches after the decomposition is covered are not pivots
  a = pivots.annotate(DEC, True, retrieved_ids=[['a'], ['b'], ['a']])
  assert a.labels == [True, True, False, True] and a.z is None
  # no search at all
  a = pivots.annotate(DEC, False, retrieved_ids=[])
  assert a.labels == [False] and a.z == 0


def test_text_matching_without_doc_ids():
  dec = [
    {'query': 'q', 'answer': 'The Red Foxes'},
    {'query': 'q2', 'answer': 'Dorvik'},
  ]
  infos = ['Doc 1(Title: x) Kalo sang in Red Foxes.', 'Dorvikstan is big.']
  a = pivots.annotate(dec, False, informations=infos)
  # 'red foxes' (articles dropped) matches; 'dorvik' is not a whole word
  assert a.labels == [True, False, False] and a.z == 1
  with pytest.raises(ValueError, match='has no doc_id'):
    pivots.annotate(dec, True, retrieved_ids=[['a']])


def test_bad_input():
  with pytest.raises(ValueError, match='non-empty'):
    pivots.annotate([], True, retrieved_ids=[])
  with pytest.raises(ValueError, match='retrieved_ids and/or'):
    pivots.annotate(DEC, True)
  with pytest.raises(ValueError, match='informations has 1'):
    pivots.annotate(DEC, True, retrieved_ids=[['a'], ['b']], informations=['x'])


def test_label_arrays():
  anns = [
    pivots.annotate(DEC, True, retrieved_ids=[['a'], ['b']]),
    pivots.annotate(DEC, False, retrieved_ids=[['b']]),
  ]
  out = pivots.label_arrays(anns, 4)
  np.testing.assert_array_equal(out['labels'], [[1, 1, 1, 0], [0, 0, 0, 0]])
  np.testing.assert_array_equal(out['valid'], [[1, 1, 1, 0], [1, 1, 0, 0]])
  np.testing.assert_array_equal(out['z'], [-1, 0])
  with pytest.raises(ValueError, match='num_steps=2'):
    pivots.label_arrays(anns, 2)
