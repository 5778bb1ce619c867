"""Every registered experiment has what run_all and its users need."""

import importlib
import pathlib

import ml_collections
import pytest

from experiments import common_main
from experiments import registry

EXP_DIR = pathlib.Path(registry.__file__).resolve().parent


@pytest.mark.parametrize('name', sorted(registry.EXPERIMENTS))
def test_experiment_is_complete(name):
  folder = EXP_DIR / name
  assert (folder / 'main.py').is_file(), f'{name} has no main.py'
  for config_name in ('tiny', 'default', 'paper'):
    module = importlib.import_module(
      f'experiments.{name}.configs.{config_name}'
    )
    config = module.get_config()
    assert isinstance(config, ml_collections.ConfigDict), (name, config_name)
  run = common_main.resolve(registry.EXPERIMENTS[name])
  assert callable(run)
  package = registry.EXPERIMENTS[name].split('.')[0]
  if package != 'experiments':
    readme = pathlib.Path(importlib.import_module(package).__file__).parent
    assert (readme / 'README.md').is_file(), f'{package} has no README.md'
