"""Fixtures shared by the experiments tests: fake registered experiments."""

import pytest

_FAKE_MODULE = """
import json, os
from common import metrics

def run(config, workdir):
  losses = [1.0 / (i + 1) for i in range(config.steps)]
  result = {
    'title': 'Fake experiment',
    'config_name': config.name,
    'summary': {'final_loss': losses[-1], 'steps': config.steps},
    'tables': [{'title': 'Vs paper', 'columns': ['method', 'ours', 'paper'],
                'rows': [['fake', losses[-1], 0.1]]}],
    'curves': [{'title': 'Loss', 'xlabel': 'step', 'ylabel': 'loss',
                'series': {'fake': {'x': list(range(config.steps)),
                                    'y': losses}}}],
    'notes': ['tiny scale'],
  }
  metrics.write_json(os.path.join(workdir, 'metrics.json'), result)
  return result

def run_dies_once(config, workdir):
  # The first attempt's process dies without an exception (as XLA's abort
  # of a stuck collective does); the second runs.
  marker = os.path.join(workdir, 'died_once')
  if not os.path.exists(marker):
    open(marker, 'w').close()
    os._exit(3)
  return run(config, workdir)

def run_reports_setup(config, workdir):
  # What the experiment's process was set up with.
  import jax
  with open(os.path.join(workdir, 'setup.txt'), 'w') as f:
    f.write(os.environ.get('XLA_FLAGS', '') + '\\n')
    f.write(f'{jax.config.jax_compilation_cache_dir}\\n')
    f.write(f'{jax.device_count()}\\n')
  return run(config, workdir)

def run_always_dies(config, workdir):
  os._exit(3)

def run_broken(config, workdir):
  raise ValueError(f'boom at lr={config.lr}')

def run_bad_schema(config, workdir):
  result = {'summary': {'x': 1}}  # no title
  metrics.write_json(os.path.join(workdir, 'metrics.json'), result)
  return result
"""

_CONFIG = """
import ml_collections

def get_config():
  return ml_collections.ConfigDict(
    {{'name': '{name}', 'steps': {steps}, 'lr': 0.5}}
  )
"""


@pytest.fixture
def fake_experiments(tmp_path, monkeypatch):
  """Fake experiment module on sys.path plus config folders."""
  pkg = tmp_path / 'pkgs'
  pkg.mkdir()
  (pkg / 'fake_exp_mod.py').write_text(_FAKE_MODULE)
  monkeypatch.syspath_prepend(str(pkg))
  exp_dir = tmp_path / 'experiments'
  for name in ('good', 'broken', 'bad_schema', 'no_tiny'):
    configs = exp_dir / name / 'configs'
    configs.mkdir(parents=True)
    (configs / 'default.py').write_text(_CONFIG.format(name='default', steps=6))
    if name != 'no_tiny':
      (configs / 'tiny.py').write_text(_CONFIG.format(name='tiny', steps=3))
  registered = {
    'good': 'fake_exp_mod:run',
    'broken': 'fake_exp_mod:run_broken',
    'bad_schema': 'fake_exp_mod:run_bad_schema',
    'no_tiny': 'fake_exp_mod:run',
  }
  return registered, exp_dir
