"""Builds `report.md` (+ PNG plots) from runs' `metrics.json` files."""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from common import stats
from common.metrics import progress
from common.report import plots
from common.report import schema

PLOTS_DIR = 'plots'
_OVERVIEW_COLUMNS = ('experiment', 'config', 'status', 'time', 'headline')
# Summary entries shown in the overview table, per experiment.
HEADLINE_ITEMS = 4
# Longest error line shown in the overview (the section has the traceback).
_MAX_ERROR_CHARS = 160
_TINY_BANNER = (
  '> **Smoke test.** These runs use the `tiny` configs: seconds of training '
  'on toy sizes, to check that every stage runs end to end. Their numbers '
  "say nothing about the methods' effects; run the `default` configs (`make "
  'demo`) for those.'
)
_SCALE_CAVEAT = (
  'Runs use the configuration named in each section; `tiny` and `default` '
  "are CPU-scale versions of the papers' settings (smaller models, fewer "
  'steps, synthetic data), so compare the direction and size of effects with '
  "the papers' numbers, not the absolute values. Each section's notes give "
  'its own caveats and deviations.'
)


def format_cell(value: Any) -> str:
  """A table cell: 4 significant digits for floats, `-` for None.

  Pipes are escaped and newlines flattened so a cell never breaks the row.
  """
  if value is None:
    return '-'
  if isinstance(value, bool):
    return 'yes' if value else 'no'
  if isinstance(value, float):
    if math.isnan(value) or math.isinf(value):
      return str(value)
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
      return f'{value:.3e}'
    return f'{value:.4g}'
  return str(value).replace('|', '\\|').replace('\n', ' ')


def markdown_table(
  columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> str:
  """A GitHub-flavoured Markdown table.

  Raises:
    ValueError: a row's length differs from the number of columns.
  """
  for i, row in enumerate(rows):
    if len(row) != len(columns):
      raise ValueError(
        f'markdown_table: row {i} has {len(row)} cells, expected '
        f'{len(columns)} (columns: {", ".join(columns)}).'
      )
  lines = [
    '| ' + ' | '.join(format_cell(c) for c in columns) + ' |',
    '| ' + ' | '.join('---' for _ in columns) + ' |',
  ]
  lines += ['| ' + ' | '.join(format_cell(c) for c in r) + ' |' for r in rows]
  return '\n'.join(lines)


def _headline(m: Mapping[str, Any]) -> str:
  """The run's `headline` keys (or its first summary entries)."""
  summary = m['summary']
  keys = m.get('headline') or list(summary)[:HEADLINE_ITEMS]
  text = '; '.join(f'{k}={format_cell(summary[k])}' for k in keys)
  if not m.get('headline') and len(summary) > HEADLINE_ITEMS:
    text += '; ...'
  return text or '-'


def _signed(x: float) -> str:
  return '0' if abs(x) < 1e-12 else f'{x:+.3g}'


def _effect_row(e: Mapping[str, Any]) -> list[Any]:
  seeds = e.get('num_seeds')
  if seeds is not None and seeds < stats.MIN_SEEDS:
    verdict = f'not shown (fewer than {stats.MIN_SEEDS} seeds)'
  elif e['low'] > 0 or e['high'] < 0:
    verdict = 'shown'
  else:
    verdict = 'not shown (interval holds 0)'
  level = round(100 * e.get('confidence', 0.95))
  return [
    e['name'],
    e['method'],
    e['baseline'],
    _signed(e['mean']),
    f'[{_signed(e["low"])}, {_signed(e["high"])}] ({level}%)',
    e.get('num_seeds') if e.get('num_seeds') is not None else '-',
    verdict,
    e.get('paper', '') or '-',
  ]


def _find_runs(runs) -> list[pathlib.Path]:
  if isinstance(runs, (str, os.PathLike)):
    root = pathlib.Path(runs)
    if not root.is_dir():
      raise FileNotFoundError(f'build_report: no such folder: {root}')
    if (root / schema.METRICS_FILE).is_file():
      return [root]
    return sorted(
      p for p in root.iterdir() if (p / schema.METRICS_FILE).is_file()
    )
  dirs = [pathlib.Path(r) for r in runs]
  for d in dirs:
    if not (d / schema.METRICS_FILE).is_file():
      raise FileNotFoundError(
        f'build_report: run folder {d} has no {schema.METRICS_FILE}.'
      )
  return dirs


def _section(
  name: str,
  m: Mapping[str, Any],
  run_dir: pathlib.Path,
  report_dir: pathlib.Path,
  duration: float | None,
) -> list[str]:
  out = [f'## {m["title"]} (`{name}`)', '']
  meta = f'config: `{m["config_name"]}`'
  if duration is not None:
    meta += f' · time: {progress.format_duration(duration)}'
  meta += f' · run folder: `{os.path.relpath(run_dir, report_dir)}`'
  out += [meta, '']
  if m.get('effects'):
    out += ['### Effects (method minus baseline, paired seeds)', '']
    out.append(
      markdown_table(
        [
          'effect',
          'method',
          'baseline',
          'mean',
          'interval',
          'seeds',
          'verdict',
          'paper',
        ],
        [_effect_row(e) for e in m['effects']],
      )  # fmt: skip
    )
    out += [
      '',
      '*An effect is called shown only where its paired bootstrap interval '
      f'excludes zero over at least {stats.MIN_SEEDS} seeds.*',
      '',
    ]
  if m['summary']:
    out += ['### Summary', '']
    out.append(markdown_table(['metric', 'value'], list(m['summary'].items())))
    out.append('')
  for t in m['tables']:
    out += [f'### {t["title"]}', '', markdown_table(t['columns'], t['rows'])]
    if t['note']:
      out += ['', f'*{t["note"]}*']
    out.append('')
  for i, curve in enumerate(m['curves']):
    png = (
      report_dir / PLOTS_DIR / name / f'{i}-{plots.slugify(curve["title"])}.png'
    )
    plots.plot_curve(curve, png)
    rel = pathlib.PurePath(os.path.relpath(png, report_dir)).as_posix()
    out += [f'### {curve["title"]}', '', f'![{curve["title"]}]({rel})', '']
  for fig in m['figures']:
    rel = os.path.relpath(run_dir / fig['path'], report_dir)
    rel = pathlib.PurePath(rel).as_posix()
    out += [f'### {fig["title"]}', '', f'![{fig["title"]}]({rel})', '']
  if m['notes']:
    out += ['### Notes', '']
    out += [f'- {note}' for note in m['notes']]
    out.append('')
  return out


def build_report(
  runs: str | os.PathLike | Sequence[str | os.PathLike],
  out_path: str | os.PathLike | None = None,
  *,
  failures: Mapping[str, str] | None = None,
  durations: Mapping[str, float] | None = None,
  order: Sequence[str] | None = None,
  title: str = 'Results',
) -> pathlib.Path:
  """Writes a Markdown report over runs, with PNG plots of their curves.

  Args:
    runs: a root folder (each subfolder holding a `metrics.json` is a run;
      a folder that itself holds one is a single run), or a list of run
      folders. A run's name is its folder name.
    out_path: the report file (default `<root>/report.md`, or `report.md`
      in the first run's parent folder). Plots go to `plots/<run>/` beside
      it.
    failures: run name -> error text, for runs that failed; each gets a
      FAILED row and section.
    durations: run name -> seconds, shown when given.
    order: the order of sections (names from runs and failures); default:
      runs as found, then failures.
    title: the report's heading.

  Returns:
    The path of the written report.

  Raises:
    FileNotFoundError: the root or a listed run folder (or its
      `metrics.json`) does not exist, or a figure file is missing.
    schema.MetricsSchemaError: a `metrics.json` breaks the schema (names the
      file and field).
    ValueError: no runs and no failures, or `order` names an unknown run.
  """
  failures = dict(failures or {})
  durations = dict(durations or {})
  run_dirs = _find_runs(runs)
  if not run_dirs and not failures:
    raise ValueError(f'build_report: no {schema.METRICS_FILE} found in {runs}.')
  if out_path is None:
    base = (
      pathlib.Path(runs)
      if isinstance(runs, (str, os.PathLike))
      else run_dirs[0].parent
    )
    out_path = base / 'report.md'
  out_path = pathlib.Path(out_path)
  report_dir = out_path.parent
  report_dir.mkdir(parents=True, exist_ok=True)

  loaded = {d.name: (d, schema.load_metrics(d)) for d in run_dirs}
  names = list(loaded) + [n for n in failures if n not in loaded]
  if order is not None:
    unknown = sorted(set(order) - set(names))
    if unknown:
      raise ValueError(
        f'build_report: order names unknown runs {unknown}; known: {names}.'
      )
    names = list(order) + [n for n in names if n not in order]

  lines = [f'# {title}', '']
  tiny = [
    n for n in names if n in loaded and loaded[n][1]['config_name'] == 'tiny'
  ]
  if tiny:
    lines += [_TINY_BANNER, '']
  lines += [_SCALE_CAVEAT, '', '## Overview', '']
  rows = []
  for name in names:
    time = durations.get(name)
    time = progress.format_duration(time) if time is not None else '-'
    if name in failures:
      error = failures[name].strip().splitlines()
      last = error[-1] if error else '-'
      if len(last) > _MAX_ERROR_CHARS:
        last = last[: _MAX_ERROR_CHARS - 3] + '...'
      rows.append([name, '-', 'FAILED', time, last])
    else:
      m = loaded[name][1]
      rows.append([name, m['config_name'], 'ok', time, _headline(m)])
  lines += [
    markdown_table(
      ['experiment', 'config', 'status', 'time', 'headline'], rows
    ),
    '',
  ]
  for name in names:
    if name in failures:
      lines += [f'## `{name}`: FAILED', '', '```', failures[name].strip()]
      lines += ['```', '']
    else:
      run_dir, m = loaded[name]
      lines += _section(name, m, run_dir, report_dir, durations.get(name))
  out_path.write_text('\n'.join(lines).rstrip() + '\n')
  return out_path
