"""run_all over fake registered experiments; the common_main helper."""

import json
import shutil
import textwrap

import pytest
from absl import app
from absl import flags

from common import metrics
from experiments import common_main
from experiments import registry
from experiments import run_all


def test_run_all_good_and_failures(fake_experiments, tmp_path):
  registered, exp_dir = fake_experiments
  workdir = tmp_path / 'runs'
  outcomes = run_all.run_all(
    workdir, 'tiny', experiments=registered, experiments_dir=exp_dir
  )
  status = {o.name: o.status for o in outcomes}
  assert status == {
    'good': 'ok',
    'broken': 'FAILED',
    'bad_schema': 'FAILED',
    'no_tiny': 'FAILED',
  }
  errors = {o.name: o.error for o in outcomes}
  assert 'ValueError: boom at lr=0.5' in errors['broken']
  assert 'title: is required but missing' in errors['bad_schema']
  assert "no config 'tiny'" in errors['no_tiny']
  assert "available: ['default']" in errors['no_tiny']
  assert (workdir / 'broken' / 'error.txt').read_text() == errors['broken']

  text = (workdir / 'report.md').read_text()
  assert '| good | tiny | ok |' in text
  assert '| broken | - | FAILED |' in text
  assert 'ValueError: boom at lr=0.5' in text
  assert '## `no_tiny`: FAILED' in text
  assert '| fake | 0.3333 | 0.1 |' in text
  assert '![Loss](plots/good/0-loss.png)' in text
  assert (workdir / 'plots' / 'good' / '0-loss.png').is_file()
  # The config each run used is saved beside it.
  saved = json.loads((workdir / 'good' / 'config.json').read_text())
  assert saved == {'lr': 0.5, 'name': 'tiny', 'steps': 3}
  summary = metrics.read_json(workdir / 'run_all.json')
  assert [e['status'] for e in summary['experiments']] == [
    'ok',
    'FAILED',
    'FAILED',
    'FAILED',
  ]


def test_main_with_patched_registry(fake_experiments, tmp_path, monkeypatch):
  registered, exp_dir = fake_experiments
  monkeypatch.setattr(registry, 'EXPERIMENTS', registered)
  monkeypatch.setattr(run_all, 'EXPERIMENTS_DIR', exp_dir)
  fv = flags.FlagValues()
  run_all.define_flags(fv)
  workdir = tmp_path / 'demo'
  # (No compilation cache: main would set it for this test process.)
  fv(
    [
      'run_all',
      f'--workdir={workdir}',
      '--config_name=tiny',
      '--only=good',
      '--compilation_cache=',
    ]
  )
  assert run_all.main(['run_all'], fv) == 0
  assert (workdir / 'report.md').is_file()
  assert not (workdir / 'broken').exists()

  fv = flags.FlagValues()
  run_all.define_flags(fv)
  fv(
    [
      'run_all',
      f'--workdir={workdir}',
      '--config_name=tiny',
      '--only=good,broken',
      '--compilation_cache=',
    ]
  )
  assert run_all.main(['run_all'], fv) == 1
  assert 'FAILED' in (workdir / 'report.md').read_text()

  fv = flags.FlagValues()
  run_all.define_flags(fv)
  fv(['run_all', '--only=good,nope'])
  with pytest.raises(
    app.UsageError,
    match=r"unknown experiment\(s\) \['nope'\]"
    r'.*registered: good, broken, bad_schema, no_tiny',
  ):
    run_all.main(['run_all'], fv)


def test_select_and_load_config_errors(fake_experiments):
  _, exp_dir = fake_experiments
  assert run_all.select('b,a', ['a', 'b', 'c']) == ['a', 'b']
  assert run_all.select(None, ['a', 'b']) == ['a', 'b']
  with pytest.raises(ValueError, match='registered: a, b'):
    run_all.select(['x'], ['a', 'b'])
  (exp_dir / 'good' / 'configs' / 'nofn.py').write_text('x = 1\n')
  with pytest.raises(TypeError, match='defines no get_config'):
    run_all.load_config('good', 'nofn', exp_dir)
  cfg = run_all.load_config('good', 'default', exp_dir)
  assert cfg.steps == 6


def test_resolve_errors():
  with pytest.raises(ValueError, match="must be 'package.module:function'"):
    common_main.resolve('no_colon')
  with pytest.raises(AttributeError, match="has no function 'nope'"):
    common_main.resolve('json:nope')
  with pytest.raises(ModuleNotFoundError):
    common_main.resolve('no_such_module_xyz:run')
  assert common_main.resolve('json:dumps') is json.dumps


def test_common_main_flags_and_run(fake_experiments, tmp_path, capsys):
  _, exp_dir = fake_experiments
  main_file = exp_dir / 'good' / 'main.py'
  main_file.write_text(textwrap.dedent('# placeholder main\n'))
  fv = flags.FlagValues()
  config, workdir = common_main.define_flags(str(main_file), fv)
  fv(['main'])
  assert config.value.steps == 6  # configs/default.py is the default
  assert workdir.value == 'runs/good'

  out = tmp_path / 'out'
  argv = [
    'main',
    f'--config={exp_dir / "good" / "configs" / "tiny.py"}',
    '--config.steps=4',
    f'--workdir={out}',
  ]
  fv = flags.FlagValues()
  config, workdir = common_main.define_flags(str(main_file), fv, argv)
  fv(argv)
  result = common_main.run_from_flags('fake_exp_mod:run', config, workdir)
  assert result['summary'] == {'final_loss': 0.25, 'steps': 4}
  assert metrics.read_json(out / 'metrics.json') == result
  assert json.loads((out / 'config.json').read_text())['steps'] == 4
  printed = capsys.readouterr().out
  assert 'final_loss: 0.25' in printed

  fv = flags.FlagValues()
  argv = ['main', '--config.stepz=4']
  # A typo in an override fails loudly, suggesting the real field (the
  # default config is loaded, and the typo caught, as the flag is defined).
  with pytest.raises(AttributeError, match='Did you mean "steps"'):
    common_main.define_flags(str(main_file), fv, argv)
    fv(argv)


def test_parallel_jobs_give_the_sequential_outcomes_and_report(
  fake_experiments, tmp_path
):
  registered, exp_dir = fake_experiments
  kw = dict(experiments=registered, experiments_dir=exp_dir, only='good,broken')
  seq = run_all.run_all(tmp_path / 'seq', 'tiny', **kw)
  par = run_all.run_all(tmp_path / 'par', 'tiny', jobs=2, cpu_devices=2, **kw)
  assert [(o.name, o.status) for o in par] == [(o.name, o.status) for o in seq]
  # One run alone (after the others): the same outcomes, in registry order.
  alone = run_all.run_all(
    tmp_path / 'alone', 'tiny', jobs=2, cpu_devices=2, run_alone={'good'}, **kw
  )
  assert [(o.name, o.status) for o in alone] == [
    (o.name, o.status) for o in seq
  ]
  assert 'ValueError: boom at lr=0.5' in par[1].error
  for name in ('good', 'broken'):
    assert (tmp_path / 'par' / name / 'config.json').is_file()
  report = (tmp_path / 'par' / 'report.md').read_text()
  assert '| good | tiny | ok |' in report
  assert '| broken | - | FAILED |' in report
  with pytest.raises(ValueError, match='jobs=0'):
    run_all.run_all(tmp_path / 'bad', 'tiny', jobs=0, **kw)


def test_a_dying_process_is_retried_and_fails_no_other_experiment(
  fake_experiments, tmp_path
):
  registered, exp_dir = fake_experiments
  for name, target in (('flaky', 'run_dies_once'), ('dead', 'run_always_dies')):
    registered[name] = f'fake_exp_mod:{target}'
    shutil.copytree(exp_dir / 'good', exp_dir / name)
  out = run_all.run_all(
    tmp_path / 'w', 'tiny', jobs=2, cpu_devices=2, only='good,flaky,dead',
    experiments=registered, experiments_dir=exp_dir,
  )  # fmt: skip
  assert [(o.name, o.status) for o in out] == [
    ('good', 'ok'),
    ('flaky', 'ok'),  # died once, then resumed
    ('dead', 'FAILED'),
  ]
  assert out[2].error.count('BrokenProcessPool') == 2  # both attempts
  report = (tmp_path / 'w' / 'report.md').read_text()
  assert '| flaky | tiny | ok |' in report


def test_each_process_is_set_up_before_its_backend(fake_experiments, tmp_path):
  registered, exp_dir = fake_experiments
  registered['probe'] = 'fake_exp_mod:run_reports_setup'
  shutil.copytree(exp_dir / 'good', exp_dir / 'probe')
  cache = tmp_path / 'cache'
  out = run_all.run_all(
    tmp_path / 'w', 'tiny', jobs=2, cpu_devices=3, only='good,probe',
    experiments=registered, experiments_dir=exp_dir, fast_compile=True,
    compilation_cache=cache,
  )  # fmt: skip
  assert [o.status for o in out] == ['ok', 'ok']
  xla_flags, cache_dir, devices = (
    (tmp_path / 'w' / 'probe' / 'setup.txt').read_text().splitlines()
  )
  assert '--xla_backend_optimization_level=0' in xla_flags.split()
  assert '--xla_cpu_collective_call_terminate_timeout_seconds=300' in (
    xla_flags.split()
  )
  assert cache_dir == str(cache)
  assert devices == '3'
