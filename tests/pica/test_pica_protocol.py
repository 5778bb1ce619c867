"""Search-R1 tag protocol: actions, trajectory parsing, masks, fuzzing."""

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from pica import protocol as P

GOOD = (
  '<think> need X </think> <search> who founded X </search> '
  '<information>Doc 1(Title: "X") X was founded by Y.</information> '
  '<search> where was Y born </search> <information>d</information> '
  '<think> done </think> <answer> Z </answer>'
)


def test_parse_good_trajectory():
  t = P.parse_trajectory(GOOD)
  assert t.format_ok and t.errors == []
  assert t.answer == 'Z'
  assert t.queries == ['who founded X', 'where was Y born']
  assert [s.kind for s in t.steps] == ['search', 'search', 'answer']
  assert t.steps[0].think == 'need X' and t.steps[1].think == ''
  assert t.steps[0].information.startswith('Doc 1(Title: "X")')
  assert t.steps[2].think == 'done'
  # warnings are tolerated and skipped
  w = P.parse_trajectory(
    '<search> q </search> <warning> bad </warning> <answer> a </answer>'
  )
  assert w.format_ok and w.queries == ['q']


@pytest.mark.parametrize(
  'text, error',
  [
    ('<search> q <answer> a </answer>', '<answer> opened inside <search>'),
    ('<search> q', 'unclosed <search>'),
    ('<search>  </search> <answer> a </answer>', 'empty <search> query'),
    ('<answer> a </answer> trailing', 'text after </answer>'),
    ('<answer> a </answer> <search> q </search>', '<search> after </answer>'),
    ('<think> hmm </think>', 'no <answer>'),
    ('', 'no <answer>'),
    ('<answer></answer>', 'empty <answer>'),
    ('<answer> a </answer><answer> b </answer>', 'more than one <answer>'),
    ('a </search> <answer> a </answer>', '</search> without an open'),
  ],
)
def test_malformed_trajectories(text, error):
  t = P.parse_trajectory(text)
  assert not t.format_ok
  assert any(error in e for e in t.errors), t.errors


def test_parse_action():
  assert P.parse_action('<think> x </think><search> q1 </search>') == (
    'search',
    'q1',
  )
  assert P.parse_action('<answer> 1873 </answer>') == ('answer', '1873')
  # first well-formed pair with matching names
  assert P.parse_action('<search> a </answer> <answer> b </answer>') == (
    'answer',
    'b',
  )
  assert P.parse_action('<search>   </search>').kind == 'invalid'
  assert P.parse_action('no tags').kind == 'invalid'
  assert P.parse_action('<search> a <think> </search>').kind == 'invalid'


def test_information_mask():
  # ids: 5 = <information>, 6 = </information>
  toks = np.array(
    [[1, 5, 2, 3, 6, 4, 5, 7, 6, 0], [5, 1, 1, 1, 1, 1, 1, 1, 1, 1]]
  )
  got = np.asarray(P.information_mask(toks, 5, 6))
  want = np.array([[0, 1, 1, 1, 1, 0, 1, 1, 1, 0], [1] * 10], bool)
  np.testing.assert_array_equal(got, want)


_PIECES = st.sampled_from(
  [
    '<think>',
    '</think>',
    '<search>',
    '</search>',
    '<answer>',
    '</answer>',
    '<information>',
    '</information>',
    '<warning>',
    '</warning>',
    ' ',
    'x',
    'who',
    '<',
    '>',
    '/',
    '\n',
    'é',
    '<answer',
    'search>',
  ]
)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
  st.one_of(st.text(max_size=60), st.lists(_PIECES, max_size=30).map(''.join))
)
def test_fuzz_never_raises(text):
  t = P.parse_trajectory(text)
  assert t.format_ok == (not t.errors)
  if t.format_ok:
    assert t.answer is not None and text.rstrip().endswith('</answer>')
  a = P.parse_action(text)
  assert a.kind in ('search', 'answer', 'invalid')
