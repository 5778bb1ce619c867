"""The report's effects table, headline keys, tiny banner and plot styles."""

import re

import numpy as np
import pytest
from PIL import Image

from common import report
from common import stats
from common.report import plots
from common.report import schema


def _metrics(config_name='default', **extra):
  eff = stats.paired_effect([0.5, 0.6, 0.7], [0.4, 0.45, 0.5])
  flat = stats.paired_effect([0.3, 0.1, 0.2], [0.2, 0.2, 0.2])
  return {
    'title': 'Toy',
    'config_name': config_name,
    'summary': {'baseline': 0.45, 'method': 0.6, 'paper': 0.7, 'seconds': 3},
    'headline': ['method', 'baseline', 'paper'],
    'effects': [
      eff.as_entry('accuracy', 'method', 'baseline', paper='+0.10'),
      flat.as_entry('other', 'method', 'baseline'),
    ],
    **extra,
  }


def test_effects_headline_and_verdicts(tmp_path):
  report.write_metrics(tmp_path / 'toy', _metrics())
  text = report.build_report(tmp_path).read_text()
  assert (
    '| toy | default | ok | - | method=0.6; baseline=0.45; paper=0.7 |' in text
  )
  assert 'Effects (method minus baseline, paired seeds)' in text
  rows = [ln for ln in text.splitlines() if ln.startswith('| accuracy')]
  assert rows and '| shown |' in rows[0] and '+0.10' in rows[0]
  rows = [ln for ln in text.splitlines() if ln.startswith('| other')]
  assert rows and 'not shown (interval holds 0)' in rows[0]
  assert 'Smoke test' not in text


def test_tiny_runs_get_the_banner(tmp_path):
  report.write_metrics(tmp_path / 'toy', _metrics('tiny'))
  assert '**Smoke test.**' in report.build_report(tmp_path).read_text()


@pytest.mark.parametrize(
  'change, field',
  [
    ({'headline': ['nope']}, 'headline[0]'),
    (
      {
        'effects': [
          {
            'name': 'x',
            'method': 'a',
            'baseline': 'b',
            'mean': 1,
            'low': 2,
            'high': 3,
          }
        ]
      },
      'effects[0]',
    ),  # fmt: skip
    (
      {
        'effects': [
          {
            'name': 'x',
            'method': 'a',
            'baseline': 'b',
            'mean': 1,
            'low': 0,
            'high': 3,
            'seeds': 3,
          }
        ]
      },
      'effects[0].seeds',
    ),  # fmt: skip
  ],
)
def test_bad_headline_and_effects_are_named(tmp_path, change, field):
  with pytest.raises(schema.MetricsSchemaError, match=re.escape(field + ':')):
    report.write_metrics(tmp_path, {**_metrics(), **change})
  assert not (tmp_path / 'metrics.json').exists()


def test_equal_series_stay_distinguishable_and_steps_get_integer_ticks(
  tmp_path,
):
  x = [0, 1, 2, 3]
  curve = {
    'title': 'two equal lines',
    'xlabel': 'step',
    'ylabel': 'y',
    'series': {
      'a': {'x': x, 'y': [1, 2, 3, 4]},
      'b': {'x': x, 'y': [1, 2, 3, 4]},
    },
  }
  png = plots.plot_curve(curve, tmp_path / 'p.png')
  img = np.asarray(Image.open(png).convert('RGB'))
  assert img.shape[0] > 100 and img.shape[1] > 100
  # Same data, second line drawn dashed in another colour: both colours show.
  blue = np.all(np.abs(img.astype(int) - [31, 119, 180]) < 40, axis=-1).sum()
  orange = np.all(np.abs(img.astype(int) - [255, 127, 14]) < 40, axis=-1).sum()
  assert blue > 50 and orange > 50, (blue, orange)
