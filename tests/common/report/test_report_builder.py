"""Report builder: validation, Markdown tables, plots, failures."""

import json
import re

import pytest

from common import report

_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _write(run_dir, obj):
  run_dir.mkdir(parents=True, exist_ok=True)
  (run_dir / 'metrics.json').write_text(json.dumps(obj))


def _full_metrics():
  return {
    'title': 'NSPO on arithmetic',
    'config_name': 'tiny',
    'summary': {'acc': 0.8123456, 'general_drop': -0.0001234, 'steps': 20},
    'tables': [
      {
        'title': 'Accuracy vs paper',
        'columns': ['method', 'ours', 'paper'],
        'rows': [['SFT', 0.5, 61.2], ['NSPO', 0.75, None]],
        'note': 'paper numbers at 7B scale',
      }
    ],
    'curves': [
      {
        'title': 'Training loss',
        'xlabel': 'step',
        'ylabel': 'loss',
        'series': {
          'nspo': {'x': [1, 2, 3], 'y': [2.0, 1.5, 1.2]},
          'sft': {'x': [1, 2, 3], 'y': [2.0, 1.7, float('nan')]},
        },
      }
    ],
    'figures': [{'title': 'Attention map', 'path': 'att.png'}],
    'notes': ['Scale: 2-layer model instead of 7B.'],
  }


def _two_runs(tmp_path):
  root = tmp_path / 'runs'
  _write(root / 'nspo', _full_metrics())
  (root / 'nspo' / 'att.png').write_bytes(_PNG_MAGIC)
  _write(root / 'cku', {'title': 'CKU', 'summary': {'forget': 'done'}})
  (root / 'not_a_run').mkdir()
  return root


def test_report_contents_tables_and_plots(tmp_path):
  root = _two_runs(tmp_path)
  out = report.build_report(root, durations={'nspo': 12.34})
  assert out == root / 'report.md'
  text = out.read_text()
  # Overview: both runs (sorted by folder name), with headline values.
  assert '| cku | custom | ok | - | forget=done |' in text
  assert (
    '| nspo | tiny | ok | 12.3 s | acc=0.8123; general_drop=-1.234e-04; '
    'steps=20 |' in text
  )
  assert 'not_a_run' not in text
  assert text.index('## CKU (`cku`)') < text.index('## NSPO on arithmetic')
  # The run's table, rendered as Markdown, with its note.
  assert (
    '| method | ours | paper |\n| --- | --- | --- |\n'
    '| SFT | 0.5 | 61.2 |\n| NSPO | 0.75 | - |' in text
  )
  assert '*paper numbers at 7B scale*' in text
  assert '- Scale: 2-layer model instead of 7B.' in text
  # Every image link points at an existing PNG.
  links = re.findall(r'!\[[^\]]*\]\(([^)]+)\)', text)
  assert links == ['plots/nspo/0-training-loss.png', 'nspo/att.png']
  for link in links:
    assert (root / link).read_bytes().startswith(_PNG_MAGIC)
  assert (root / links[0]).stat().st_size > 1000  # a real plot


def test_report_from_run_list_with_failure_and_order(tmp_path):
  root = _two_runs(tmp_path)
  out = report.build_report(
    [root / 'nspo'],
    tmp_path / 'rep' / 'report.md',
    failures={'graph': 'Traceback ...\nValueError: bad trigger size'},
    order=['graph', 'nspo'],
  )
  text = out.read_text()
  assert '| graph | - | FAILED | - | ValueError: bad trigger size |' in text
  assert '## `graph`: FAILED' in text
  assert text.index('`graph`: FAILED') < text.index('## NSPO on arithmetic')
  assert '![Attention map](../runs/nspo/att.png)' in text
  assert (tmp_path / 'rep' / 'plots' / 'nspo' / '0-training-loss.png').exists()
  with pytest.raises(ValueError, match=r"unknown runs \['lm'\]"):
    report.build_report([root / 'nspo'], tmp_path / 'r.md', order=['lm'])


@pytest.mark.parametrize(
  'mutate, field, problem',
  [
    (lambda m: m.pop('title'), 'title', 'is required but missing'),
    (lambda m: m.pop('summary'), 'summary', 'is required but missing'),
    (lambda m: m.update(title=' '), 'title', 'non-empty string'),
    (
      lambda m: m['tables'][0]['rows'].append([1, 2]),
      r'tables\[0\]\.rows\[2\]',
      r'has 2 cells, expected 3 \(columns: method, ours, paper\)',
    ),
    (
      lambda m: m['tables'][0]['rows'][0].__setitem__(1, [1]),
      r'tables\[0\]\.rows\[0\]\[1\]',
      'must be a number, string or null',
    ),
    (lambda m: m.update(tabels=[]), 'tabels', 'unknown field; allowed'),
    (
      lambda m: m['summary'].update(acc=[1, 2]),
      r'summary\.acc',
      'must be a number or string',
    ),
    (
      lambda m: m['curves'][0]['series']['nspo']['y'].pop(),
      r'curves\[0\]\.series\.nspo',
      'x has 3 points but y has 2',
    ),
    (
      lambda m: m['figures'][0].update(path='missing.png'),
      r'figures\[0\]\.path',
      'does not exist',
    ),
    (
      lambda m: m['figures'][0].update(path='/abs/att.png'),
      r'figures\[0\]\.path',
      'must be relative',
    ),
    (lambda m: m.update(notes='one'), 'notes', 'must be a list'),
  ],
)
def test_malformed_metrics_error_names_file_and_field(
  tmp_path, mutate, field, problem
):
  root = _two_runs(tmp_path)
  bad = _full_metrics()
  mutate(bad)
  _write(root / 'nspo', bad)
  with pytest.raises(report.MetricsSchemaError) as info:
    report.build_report(root)
  msg = str(info.value)
  assert str(root / 'nspo' / 'metrics.json') in msg
  assert re.search(f'{field}: .*{problem}', msg), msg
  assert not (root / 'report.md').exists()


def test_validate_fills_defaults():
  m = report.validate_metrics({'title': 'T', 'summary': {}}, 'x.json')
  assert m == {
    'title': 'T',
    'config_name': 'custom',
    'summary': {},
    'headline': [],
    'effects': [],
    'tables': [],
    'curves': [],
    'figures': [],
    'notes': [],
  }


def test_missing_inputs(tmp_path):
  with pytest.raises(FileNotFoundError, match='no such folder'):
    report.build_report(tmp_path / 'nope')
  (tmp_path / 'empty').mkdir()
  with pytest.raises(ValueError, match='no metrics.json found'):
    report.build_report(tmp_path / 'empty')
  (tmp_path / 'run').mkdir()
  with pytest.raises(FileNotFoundError, match='has no metrics.json'):
    report.build_report([tmp_path / 'run'])
  (tmp_path / 'run' / 'metrics.json').write_text('{"title": ')
  with pytest.raises(ValueError, match='is not valid JSON'):
    report.build_report([tmp_path / 'run'])


@pytest.mark.parametrize(
  'value, text',
  [
    (None, '-'),
    (True, 'yes'),
    (3, '3'),
    (0.0, '0'),
    (0.123456, '0.1235'),
    (123456.0, '1.235e+05'),
    (0.0004, '4.000e-04'),
    (float('nan'), 'nan'),
    ('a|b\nc', 'a\\|b c'),
  ],
)
def test_format_cell(value, text):
  assert report.format_cell(value) == text


def test_markdown_table_row_length():
  assert report.markdown_table(['a', 'b'], [[1, 'x']]) == (
    '| a | b |\n| --- | --- |\n| 1 | x |'
  )
  with pytest.raises(ValueError, match='row 0 has 1 cells, expected 2'):
    report.markdown_table(['a', 'b'], [[1]])
