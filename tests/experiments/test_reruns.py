"""Reruns: same config resumes, another config is refused, --only keeps
the other sections; bad --config input ends with one line before any work.
"""

import json
import os
import subprocess
import sys

import ml_collections
import pytest

from common import metrics
from experiments import common_main
from experiments import run_all

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _cfg(**kw):
  base = {'name': 'tiny', 'seed': 0, 'model': {'d_model': 32, 'n_layers': 1}}
  base['model'].update(kw.pop('model', {}))
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_same_config_reclaims_the_workdir(tmp_path):
  common_main.save_config(_cfg(), str(tmp_path))
  (tmp_path / 'checkpoints').mkdir()
  common_main.save_config(_cfg(), str(tmp_path))  # no error, nothing lost
  assert (tmp_path / 'checkpoints').is_dir()


def test_other_config_is_refused_naming_the_fields(tmp_path):
  common_main.save_config(_cfg(), str(tmp_path))
  (tmp_path / 'checkpoints').mkdir()
  with pytest.raises(common_main.ConfigMismatchError) as e:
    common_main.save_config(_cfg(seed=3, model={'n_layers': 2}), str(tmp_path))
  assert e.value.differences == ['model.n_layers: 1 -> 2', 'seed: 0 -> 3']
  assert '--overwrite' in str(e.value) and 'new --workdir' in str(e.value)
  assert (tmp_path / 'checkpoints').is_dir()  # refused: untouched
  assert json.loads((tmp_path / 'config.json').read_text())['seed'] == 0
  common_main.save_config(_cfg(seed=3), str(tmp_path), overwrite=True)
  assert not (tmp_path / 'checkpoints').exists()
  assert json.loads((tmp_path / 'config.json').read_text())['seed'] == 3


def test_config_differences_sees_added_and_removed_fields():
  diff = common_main.config_differences({'a': 1, 'b': {'c': 2}}, {'b': {}})
  assert diff == ['a: 1 -> "<absent>"', 'b.c: 2 -> "<absent>"']


def test_corrupt_config_json_is_named(tmp_path):
  (tmp_path / 'config.json').write_text('{not json')
  with pytest.raises(ValueError, match=r'config.json is not valid JSON'):
    common_main.save_config(_cfg(), str(tmp_path))


def test_only_keeps_the_other_sections(fake_experiments, tmp_path):
  registered, exp_dir = fake_experiments
  two = {'good': registered['good'], 'other': registered['good']}
  (exp_dir / 'other').mkdir()
  os.rename(exp_dir / 'no_tiny' / 'configs', exp_dir / 'other' / 'configs')
  kw = dict(experiments=two, experiments_dir=exp_dir)
  run_all.run_all(tmp_path, 'default', **kw)
  run_all.run_all(tmp_path, 'default', only='other', **kw)
  summary = metrics.read_json(tmp_path / run_all.SUMMARY_JSON)
  assert [e['name'] for e in summary['experiments']] == ['good', 'other']
  report = (tmp_path / 'report.md').read_text()
  assert report.count('Fake experiment') >= 2  # both sections are there


def test_rerun_with_another_config_fails_that_experiment(
  fake_experiments,
  tmp_path,
):
  registered, exp_dir = fake_experiments
  one = {'good': registered['good']}
  kw = dict(experiments=one, experiments_dir=exp_dir)
  (o,) = run_all.run_all(tmp_path, 'default', **kw)
  assert o.status == 'ok'
  # 'tiny' into the same workdir: another config, refused, old run intact.
  (o,) = run_all.run_all(tmp_path, 'tiny', **kw)
  assert o.status == 'FAILED' and 'steps: 6 -> 3' in o.error
  assert (
    metrics.read_json(tmp_path / 'good' / 'metrics.json')['summary']['steps']
    == 6
  )
  (o,) = run_all.run_all(tmp_path, 'tiny', overwrite=True, **kw)
  assert o.status == 'ok'


def _main(*args, cwd):
  return subprocess.run(
    [sys.executable, '-m', 'experiments.lm_core.main', *args],
    cwd=cwd,
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
  )


@pytest.mark.parametrize(
  'args, message',
  [
    (
      ['--config=/no/such/config.py'],
      'error: --config=/no/such/config.py: the config file could not be loaded',
    ),
    (
      ['--config.sft.stepz=3'],
      "error: unknown field 'stepz' in config.sft (from "
      "--config.sft.stepz=3); did you mean 'steps'",
    ),
    (
      ['--config.sft.batch_size=0'],
      'error: config.sft.batch_size=0 is invalid; allowed: an integer >= 1',
    ),
  ],
)
def test_bad_config_input_is_one_line_and_exit_2(tmp_path, args, message):
  out = _main(*args, f'--workdir={tmp_path / "run"}', cwd=ROOT)
  assert out.returncode == 2, out.stderr
  lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
  assert lines[-1].startswith(message), out.stderr
  assert 'Traceback' not in out.stderr
  assert not (tmp_path / 'run').exists()  # nothing written


def test_help_lists_the_flags_and_show_config_prints(tmp_path):
  out = _main('--help', cwd=ROOT)
  for flag in (
    '--config:',
    '--workdir:',
    '--[no]overwrite',
    '--[no]show_config',
  ):
    assert flag in out.stdout, out.stdout
  out = _main('--config.sft.steps=7', '--show_config', cwd=ROOT)
  assert out.returncode == 0, out.stderr
  assert 'steps: 7' in out.stdout
