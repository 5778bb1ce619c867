"""`iter_jsonl_objects`: the one JSONL line reader, errors name file:line."""

import pytest

from common import metrics


def test_yields_line_numbers_and_skips_blank_lines(tmp_path):
  path = tmp_path / 'a.jsonl'
  path.write_text('{"a": 1}\n\n  \n{"a": 2}\n')
  assert list(metrics.iter_jsonl_objects(path)) == [
    (1, {'a': 1}),
    (4, {'a': 2}),
  ]


@pytest.mark.parametrize(
  'text, message',
  [
    ('{"a": 1}\n{"a": \n', r'a.jsonl:2: not valid JSON'),
    ('[1, 2]\n', r'a.jsonl:1: expected a JSON object, got list'),
  ],
)
def test_bad_lines_name_the_file_and_line(tmp_path, text, message):
  path = tmp_path / 'a.jsonl'
  path.write_text(text)

  class FormatError(ValueError):
    pass

  with pytest.raises(FormatError, match=message):
    list(metrics.iter_jsonl_objects(path, error=FormatError))


def test_missing_and_empty_files(tmp_path):
  with pytest.raises(FileNotFoundError, match='no such SFT file'):
    list(metrics.iter_jsonl_objects(tmp_path / 'x.jsonl', kind='SFT'))
  empty = tmp_path / 'e.jsonl'
  empty.write_text('\n')
  assert list(metrics.iter_jsonl_objects(empty)) == []
  with pytest.raises(ValueError, match='the SFT file holds no records'):
    list(metrics.iter_jsonl_objects(empty, kind='SFT', allow_empty=False))
