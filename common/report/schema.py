"""Validation of `metrics.json` (schema in common/report/README.md)."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

from common.metrics import jsonio

METRICS_FILE = 'metrics.json'
REQUIRED = ('title', 'summary')
OPTIONAL = (
  'config_name',
  'headline',
  'effects',
  'tables',
  'curves',
  'figures',
  'notes',
)
_EFFECT_KEYS = {
  'name',
  'method',
  'baseline',
  'mean',
  'low',
  'high',
  'confidence',
  'num_seeds',
  'paper',
}
_TABLE_KEYS = {'title', 'columns', 'rows', 'note'}
_CURVE_KEYS = {'title', 'xlabel', 'ylabel', 'series'}
_FIGURE_KEYS = {'title', 'path'}


class MetricsSchemaError(ValueError):
  """A `metrics.json` does not follow the schema; names file and field."""

  def __init__(self, source: str, field: str, problem: str):
    self.source, self.field = source, field
    super().__init__(f'{source}: {field}: {problem}')


def _is_number(x: Any) -> bool:
  return isinstance(x, (int, float))  # bool is an int: allowed


def _is_cell(x: Any) -> bool:
  return x is None or isinstance(x, str) or _is_number(x)


class _Checker:
  """Field-by-field checks that raise with the file and field path."""

  def __init__(self, source: str):
    self.source = source

  def fail(self, field: str, problem: str):
    raise MetricsSchemaError(self.source, field, problem)

  def dict_(self, value, field, keys=None, required=()):
    if not isinstance(value, Mapping):
      self.fail(field, f'must be an object, got {type(value).__name__}.')
    for k in required:
      if k not in value:
        self.fail(f'{field}.{k}' if field else k, 'is required but missing.')
    if keys is not None:
      unknown = sorted(set(value) - set(keys))
      if unknown:
        self.fail(
          f'{field}.{unknown[0]}' if field else unknown[0],
          f'unknown field; allowed: {", ".join(sorted(keys))}.',
        )
    return value

  def list_(self, value, field):
    if not isinstance(value, list):
      self.fail(field, f'must be a list, got {type(value).__name__}.')
    return value

  def str_(self, value, field, nonempty=False):
    if not isinstance(value, str):
      self.fail(field, f'must be a string, got {type(value).__name__}.')
    if nonempty and not value.strip():
      self.fail(field, 'must be a non-empty string.')
    return value


def validate_metrics(
  obj: Any, source: str, run_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
  """Checks a `metrics.json` object and fills the optional fields.

  Args:
    obj: the parsed JSON.
    source: where it came from (a file path), for error messages.
    run_dir: the run's folder; when given, every `figures[i].path` must name
      an existing file inside it.

  Returns:
    A dict with all schema fields (`config_name` defaults to `'custom'`, the
    lists to `[]`, table notes to `''`, curve labels to `''`).

  Raises:
    MetricsSchemaError: the first violation, e.g.
      `runs/x/metrics.json: tables[0].rows[2]: has 2 cells, expected 3`.
  """
  c = _Checker(source)
  c.dict_(obj, '', keys=REQUIRED + OPTIONAL, required=REQUIRED)
  out = {
    'title': c.str_(obj['title'], 'title', nonempty=True),
    'config_name': c.str_(obj.get('config_name', 'custom'), 'config_name'),
  }
  summary = c.dict_(obj['summary'], 'summary')
  for k, v in summary.items():
    if not (isinstance(v, str) or _is_number(v)):
      c.fail(f'summary.{k}', f'must be a number or string, got {v!r}.')
  out['summary'] = dict(summary)

  headline = c.list_(obj.get('headline', []), 'headline')
  for i, key in enumerate(headline):
    c.str_(key, f'headline[{i}]')
    if key not in summary:
      c.fail(
        f'headline[{i}]',
        f'{key!r} is not a summary key; the keys are: '
        f'{", ".join(summary) or "none"}.',
      )
  out['headline'] = list(headline)

  out['effects'] = []
  for i, e in enumerate(c.list_(obj.get('effects', []), 'effects')):
    f = f'effects[{i}]'
    c.dict_(
      e,
      f,
      keys=_EFFECT_KEYS,
      required=('name', 'method', 'baseline', 'mean', 'low', 'high'),
    )
    for k in ('name', 'method', 'baseline'):
      c.str_(e[k], f'{f}.{k}', nonempty=True)
    for k in ('mean', 'low', 'high'):
      if not _is_number(e[k]):
        c.fail(f'{f}.{k}', f'must be a number, got {e[k]!r}.')
    if not e['low'] <= e['mean'] <= e['high']:
      c.fail(f, f'needs low <= mean <= high, got {e["low"]}, {e["mean"]}, '
             f'{e["high"]}.')  # fmt: skip
    confidence = e.get('confidence', 0.95)
    if not (_is_number(confidence) and 0 < confidence < 1):
      c.fail(f'{f}.confidence', f'must be in (0, 1), got {confidence!r}.')
    seeds = e.get('num_seeds', None)
    if seeds is not None and not (isinstance(seeds, int) and seeds >= 1):
      c.fail(f'{f}.num_seeds', f'must be an int >= 1, got {seeds!r}.')
    paper = e.get('paper', '')
    if not (isinstance(paper, str) or _is_number(paper)):
      c.fail(f'{f}.paper', f'must be a number or string, got {paper!r}.')
    out['effects'].append(
      {
        **{k: e[k] for k in ('name', 'method', 'baseline')},
        **{k: float(e[k]) for k in ('mean', 'low', 'high')},
        'confidence': float(confidence),
        'num_seeds': seeds,
        'paper': paper,
      }
    )

  out['tables'] = []
  for i, t in enumerate(c.list_(obj.get('tables', []), 'tables')):
    f = f'tables[{i}]'
    c.dict_(t, f, keys=_TABLE_KEYS, required=('title', 'columns', 'rows'))
    title = c.str_(t['title'], f'{f}.title', nonempty=True)
    cols = c.list_(t['columns'], f'{f}.columns')
    if not cols:
      c.fail(f'{f}.columns', 'must name at least one column.')
    for j, col in enumerate(cols):
      c.str_(col, f'{f}.columns[{j}]')
    rows = c.list_(t['rows'], f'{f}.rows')
    for r, row in enumerate(rows):
      c.list_(row, f'{f}.rows[{r}]')
      if len(row) != len(cols):
        c.fail(
          f'{f}.rows[{r}]',
          f'has {len(row)} cells, expected {len(cols)} (columns: '
          f'{", ".join(cols)}).',
        )
      for j, cell in enumerate(row):
        if not _is_cell(cell):
          c.fail(
            f'{f}.rows[{r}][{j}]',
            f'must be a number, string or null, got {cell!r}.',
          )
    note = c.str_(t.get('note', ''), f'{f}.note')
    out['tables'].append(
      {'title': title, 'columns': cols, 'rows': rows, 'note': note}
    )

  out['curves'] = []
  for i, cv in enumerate(c.list_(obj.get('curves', []), 'curves')):
    f = f'curves[{i}]'
    c.dict_(cv, f, keys=_CURVE_KEYS, required=('title', 'series'))
    series = c.dict_(cv['series'], f'{f}.series')
    if not series:
      c.fail(f'{f}.series', 'must hold at least one series.')
    for name, s in series.items():
      g = f'{f}.series.{name}'
      c.dict_(s, g, keys={'x', 'y'}, required=('x', 'y'))
      for axis in ('x', 'y'):
        values = c.list_(s[axis], f'{g}.{axis}')
        for j, v in enumerate(values):
          if not _is_number(v):
            c.fail(f'{g}.{axis}[{j}]', f'must be a number, got {v!r}.')
      if len(s['x']) != len(s['y']):
        c.fail(g, f'x has {len(s["x"])} points but y has {len(s["y"])}.')
      if not s['x']:
        c.fail(g, 'has no points.')
    out['curves'].append(
      {
        'title': c.str_(cv['title'], f'{f}.title', nonempty=True),
        'xlabel': c.str_(cv.get('xlabel', ''), f'{f}.xlabel'),
        'ylabel': c.str_(cv.get('ylabel', ''), f'{f}.ylabel'),
        'series': dict(series),
      }
    )

  out['figures'] = []
  for i, fig in enumerate(c.list_(obj.get('figures', []), 'figures')):
    f = f'figures[{i}]'
    c.dict_(fig, f, keys=_FIGURE_KEYS, required=('title', 'path'))
    path = c.str_(fig['path'], f'{f}.path', nonempty=True)
    if os.path.isabs(path) or '..' in pathlib.PurePath(path).parts:
      c.fail(f'{f}.path', f'{path!r} must be relative to the run folder.')
    if run_dir is not None and not (pathlib.Path(run_dir) / path).is_file():
      c.fail(f'{f}.path', f'{path!r} does not exist in {run_dir}.')
    out['figures'].append(
      {'title': c.str_(fig['title'], f'{f}.title'), 'path': path}
    )

  out['notes'] = []
  for i, note in enumerate(c.list_(obj.get('notes', []), 'notes')):
    out['notes'].append(c.str_(note, f'notes[{i}]'))
  return out


def load_metrics(run_dir: str | os.PathLike) -> dict[str, Any]:
  """Reads and validates `<run_dir>/metrics.json`.

  Raises:
    FileNotFoundError: the file is missing.
    ValueError: it is not JSON, or `MetricsSchemaError` for schema errors.
  """
  path = pathlib.Path(run_dir) / METRICS_FILE
  return validate_metrics(jsonio.read_json(path), str(path), run_dir)
