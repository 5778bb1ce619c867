"""Question / corpus file loading with clear errors."""

import json

import pytest

from pica import data


def _write(path, rows):
  path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
  return path


DEC = [
  {'query': 'who founded X', 'answer': 'Y', 'doc_id': '3'},
  {'query': 'where was Y born', 'answer': 'Z'},
]


def test_load_questions_with_decomposition(tmp_path):
  p = _write(
    tmp_path / 'q.jsonl',
    [
      {'id': 'a', 'question': 'Q1?', 'golden_answers': ['Z', 'Zed']},
      {
        'question': 'Q2?',
        'golden_answers': 'Z',
        'metadata': {'decomposition': DEC, 'source': 'musique'},
      },
    ],
  )
  qs = data.load_questions(p)
  assert qs[0]['golden_answers'] == ['Z', 'Zed']
  assert 'decomposition' not in qs[0]
  assert qs[1]['golden_answers'] == ['Z']
  assert qs[1]['decomposition'] == DEC
  assert qs[1]['metadata'] == {'source': 'musique'}
  with pytest.raises(ValueError, match='question 0.*no golden'):
    data.load_questions(p, require_decomposition=True)


@pytest.mark.parametrize(
  'row, match',
  [
    ({'question': 'Q?'}, 'golden_answers'),
    ({'golden_answers': ['a']}, '"question"'),
    ({'question': ' ', 'golden_answers': ['a']}, 'non-empty str'),
    ({'question': 'Q?', 'golden_answers': []}, 'golden_answers'),
    (
      {'question': 'Q?', 'golden_answers': ['a'], 'decomposition': [{}]},
      r"decomposition\[0\] needs a non-empty str 'query'",
    ),
    (
      {
        'question': 'Q?',
        'golden_answers': ['a'],
        'decomposition': [{'query': 'q', 'answer': ''}],
      },
      "'answer'",
    ),
  ],
)
def test_bad_question_lines(tmp_path, row, match):
  p = _write(tmp_path / 'q.jsonl', [row])
  with pytest.raises(ValueError, match=match):
    data.load_questions(p)


def test_missing_and_empty_files(tmp_path):
  with pytest.raises(FileNotFoundError, match='nope.jsonl'):
    data.load_questions(tmp_path / 'nope.jsonl')
  with pytest.raises(FileNotFoundError):
    data.load_corpus(tmp_path / 'nope.jsonl')
  (tmp_path / 'e.jsonl').write_text('\n')
  with pytest.raises(ValueError, match='no questions'):
    data.load_questions(tmp_path / 'e.jsonl')
  with pytest.raises(ValueError, match='no documents'):
    data.load_corpus(tmp_path / 'e.jsonl')


def test_load_corpus(tmp_path):
  p = _write(
    tmp_path / 'c.jsonl',
    [
      {'id': 1, 'contents': '"T"\nx'},
      {'id': '2', 'title': 'U', 'text': 'y'},
    ],
  )
  docs = data.load_corpus(p)
  assert docs == [
    {'id': '1', 'contents': '"T"\nx'},
    {'id': '2', 'contents': '"U"\ny'},
  ]
  _write(tmp_path / 'd.jsonl', [{'id': 1, 'contents': 'a'}] * 2)
  with pytest.raises(ValueError, match="duplicate document id '1'"):
    data.load_corpus(tmp_path / 'd.jsonl')
  _write(tmp_path / 'm.jsonl', [{'id': 1}])
  with pytest.raises(ValueError, match='"contents"'):
    data.load_corpus(tmp_path / 'm.jsonl')


def test_load_datasets(tmp_path):
  row = {'question': 'Q?', 'golden_answers': ['a']}
  a = _write(tmp_path / 'nq.jsonl', [row])
  b = _write(tmp_path / 'hotpotqa.jsonl', [row, row])
  out = data.load_datasets([a, b])
  assert sorted(out) == ['hotpotqa', 'nq'] and len(out['hotpotqa']) == 2
