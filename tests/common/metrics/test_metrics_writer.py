"""MetricsWriter, JSON helpers and progress helpers."""

import json
import math
import os
import types

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from common import metrics
from common.metrics import progress


def test_writer_jsonl_records_and_conversion(tmp_path):
  with metrics.MetricsWriter(tmp_path, tensorboard=False) as w:
    rec = w.write(1, {'loss': jnp.asarray(0.5), 'n': np.int64(3)})
    w.write(2, {'loss': 0.25, 'ok': True})
  assert rec == {'step': 1, 'loss': 0.5, 'n': 3}
  assert type(rec['n']) is int
  lines = (tmp_path / 'metrics.jsonl').read_text().splitlines()
  assert [json.loads(x) for x in lines] == [
    {'step': 1, 'loss': 0.5, 'n': 3},
    {'step': 2, 'loss': 0.25, 'ok': True},
  ]
  assert not (tmp_path / 'tensorboard').exists()


def test_writer_tensorboard_event_file(tmp_path):
  with metrics.MetricsWriter(tmp_path) as w:
    w.write(1, {'loss': 1.0})
  events = list((tmp_path / 'tensorboard').glob('events.out.tfevents.*'))
  assert len(events) == 1 and events[0].stat().st_size > 0


def test_writer_resume_truncates_and_fresh_run_restarts(tmp_path):
  with metrics.MetricsWriter(tmp_path, tensorboard=False) as w:
    for step in range(1, 6):
      w.write(step, {'loss': float(step)})
  with metrics.MetricsWriter(tmp_path, tensorboard=False, resume_step=3) as w:
    assert [r['step'] for r in w.read()] == [1, 2, 3]
    w.write(4, {'loss': 40.0})
  recs = metrics.read_jsonl(tmp_path / 'metrics.jsonl')
  assert [(r['step'], r['loss']) for r in recs] == [
    (1, 1.0),
    (2, 2.0),
    (3, 3.0),
    (4, 40.0),
  ]
  with metrics.MetricsWriter(tmp_path, tensorboard=False) as w:
    assert w.read() == []


def test_writer_rejects_bad_values(tmp_path):
  with metrics.MetricsWriter(tmp_path, tensorboard=False) as w:
    with pytest.raises(ValueError, match=r"'acc' has shape \(2,\)"):
      w.write(1, {'acc': np.ones(2)})
    with pytest.raises(ValueError, match="'name' has dtype"):
      w.write(1, {'name': 'abc'})
    with pytest.raises(ValueError, match="'step' is reserved"):
      w.write(1, {'step': 3})


def test_disabled_writer_writes_nothing(tmp_path):
  w = metrics.MetricsWriter(tmp_path / 'off', enabled=False)
  assert w.write(1, {'loss': 2.0}) == {'step': 1, 'loss': 2.0}
  w.close()
  assert not (tmp_path / 'off').exists()


def test_read_jsonl_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='no such file'):
    metrics.read_jsonl(tmp_path / 'missing.jsonl')
  bad = tmp_path / 'bad.jsonl'
  bad.write_text('{"step": 1}\n{"loss": 2}\n')
  with pytest.raises(ValueError, match=r'bad.jsonl:2: expected an object'):
    metrics.read_jsonl(bad)
  bad.write_text('{"step": 1\n')
  with pytest.raises(ValueError, match=r'bad.jsonl:1: not valid JSON'):
    metrics.read_jsonl(bad)


def test_write_json_converts_and_is_atomic(tmp_path):
  cfg = ml_collections.ConfigDict({'lr': 0.1, 'layers': (2, 3)})
  obj = {
    'a': np.float32(0.5),
    'b': jnp.asarray(3),
    'c': np.arange(3),
    'd': (1, 'x', None),
    'e': cfg,
    'f': float('nan'),
    'p': tmp_path / 'x.png',
  }
  out = tmp_path / 'sub' / 'metrics.json'
  data = metrics.write_json(out, obj)
  back = metrics.read_json(out)
  assert back['a'] == 0.5 and back['b'] == 3 and back['c'] == [0, 1, 2]
  assert back['d'] == [1, 'x', None]
  assert back['e'] == {'lr': 0.1, 'layers': [2, 3]}
  assert math.isnan(back['f'])
  assert back['p'] == str(tmp_path / 'x.png')
  assert data['c'] == [0, 1, 2]
  # No temporary files left behind.
  assert os.listdir(out.parent) == ['metrics.json']

  # A failed conversion leaves the previous file untouched.
  with pytest.raises(TypeError, match=r'summary\.bad of type object'):
    metrics.write_json(out, {'summary': {'bad': object()}})
  assert metrics.read_json(out)['a'] == 0.5
  with pytest.raises(TypeError, match=r'key 3 at tables\[0\]'):
    metrics.write_json(out, {'tables': [{3: 'x'}]})


def test_read_json_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='no such file'):
    metrics.read_json(tmp_path / 'nope.json')
  (tmp_path / 'bad.json').write_text('{')
  with pytest.raises(ValueError, match='bad.json is not valid JSON'):
    metrics.read_json(tmp_path / 'bad.json')


@pytest.mark.parametrize(
  'seconds, text',
  [
    (0.421, '0.42 s'),
    (12.34, '12.3 s'),
    (245, '4 min 05 s'),
    (3 * 3600 + 7 * 60, '3 h 07 min'),
  ],
)
def test_format_duration(seconds, text):
  assert metrics.format_duration(seconds) == text


def test_format_duration_negative():
  with pytest.raises(ValueError, match='negative'):
    metrics.format_duration(-1)


def test_progress_bar_default_enabling():
  bar = metrics.progress_bar(500, initial=100, desc='phase')
  assert not bar.disable and bar.n == 100
  # Shown only once the loop has run a few seconds: short loops stay quiet.
  assert bar.delay == metrics.progress.MIN_SECONDS_FOR_BAR > 0
  bar.close()
  assert metrics.progress_bar(5, enabled=False).disable


def test_progress_bar_stays_quiet_for_a_short_loop(capsys):
  bar = metrics.progress_bar(3, desc='short')
  for _ in range(3):
    bar.update(1)
  bar.close()
  assert 'short' not in capsys.readouterr().err


def test_stopwatch_rate(monkeypatch):
  # A scripted clock: the rate is steps over seconds since the last lap.
  clock = iter([100.0, 102.0, 103.0, 104.5])
  monkeypatch.setattr(
    progress, 'time', types.SimpleNamespace(perf_counter=lambda: next(clock))
  )
  sw = metrics.Stopwatch(step=10)  # t = 100
  assert sw.lap(step=20) == 5.0  # 10 steps in 2 s
  assert sw.elapsed() == 3.0  # t = 103, since construction
  assert sw.lap(step=23) == 1.2  # 3 steps in 2.5 s since the last lap
