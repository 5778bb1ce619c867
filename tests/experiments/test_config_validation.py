"""Every experiment's config is checked before any work (common.schema).

For lm_core, nspo and cku: the shipped configs validate; an unknown field
gets a "did you mean"; a bad value names its dotted path, the value and what
is allowed; and `run` raises before it writes anything into the workdir.
"""

import importlib
import pathlib

import pytest

from cku import config as cku_config
from common import schema
from common.examples import lm_core
from nspo import config as nspo_config

VALIDATORS = {
  'lm_core': lm_core.validate_config,
  'nspo': nspo_config.validate_config,
  'cku': cku_config.validate_config,
}
RUNS = {
  'lm_core': 'common.examples.lm_core',
  'nspo': 'nspo.experiment',
  'cku': 'cku.experiment',
}


def _config(name, which='tiny'):
  return importlib.import_module(
    f'experiments.{name}.configs.{which}'
  ).get_config()


@pytest.mark.parametrize('which', ['tiny', 'default', 'paper'])
@pytest.mark.parametrize('name', sorted(VALIDATORS))
def test_shipped_configs_validate(name, which):
  VALIDATORS[name](_config(name, which))


@pytest.mark.parametrize('name', sorted(VALIDATORS))
def test_unknown_field_suggests_the_right_one(name):
  c = _config(name)
  c.sft.stesp = 3
  with pytest.raises(schema.ConfigError) as info:
    VALIDATORS[name](c)
  message = str(info.value)
  assert f"unknown field 'sft.stesp' in the {name} config" in message
  assert 'did you mean sft.steps?' in message


@pytest.mark.parametrize(
  'name, field, value, allowed',
  [
    ('lm_core', 'sft.batch_size', 0, 'an integer >= 1'),
    ('lm_core', 'sft.batch_size', -4, 'an integer >= 1'),
    ('lm_core', 'grpo.steps', -1, 'an integer >= 1'),
    ('lm_core', 'sft.steps', 0, 'an integer >= 1'),
    ('lm_core', 'grpo.learning_rate', 0.0, 'a finite number in (0.0, inf)'),
    ('nspo', 'rl.harmful_fraction', 1.5, 'a finite number in (0.0, 1.0]'),
    ('nspo', 'nspo.rule', 'rank', "one of ('relative', 'absolute', 'energy', "),
    ('cku', 'cku.lock_rate', 1.0, 'a finite number in [0.0, 1.0)'),
    ('cku', 'cku.layers', (0, 7), 'a layer index < n_layers=1'),
    ('cku', 'sft.warmup_steps', -1, 'an integer >= 0'),
  ],
)
def test_bad_value_names_field_value_and_allowed(name, field, value, allowed):
  c = _config(name)
  section, leaf = field.split('.')
  c[section][leaf] = value
  with pytest.raises(schema.ConfigError) as info:
    VALIDATORS[name](c)
  message = str(info.value)
  assert message.startswith(f'config.{field}')
  shown = value[-1] if isinstance(value, tuple) else value  # the bad item
  assert f'={shown!r}' in message
  assert allowed in message


@pytest.mark.parametrize('name', sorted(VALIDATORS))
def test_bad_model_field_is_named(name):
  c = _config(name)
  c.model.n_layer = 2
  with pytest.raises(schema.ConfigError, match=r'config.model.n_layer=2'):
    VALIDATORS[name](c)


@pytest.mark.parametrize('name', sorted(VALIDATORS))
def test_run_fails_before_any_work(name, tmp_path):
  c = _config(name)
  c.sft.batch_size = 0
  run = importlib.import_module(RUNS[name]).run
  workdir = tmp_path / 'work'
  with pytest.raises(schema.ConfigError, match='sft.batch_size=0'):
    run(c, str(workdir))
  assert not workdir.exists() or not any(workdir.iterdir())


def _untyped_nones(config, prefix=''):
  """Dotted paths of leaves that are None with no type: absl's config flags
  cannot override them (`--config.x=3` fails), so a default must use a
  typed `ml_collections.FieldReference` instead."""
  out = []
  for key in config:
    ref = config._fields[key]  # the FieldReference, if any
    value = config[key]
    if hasattr(value, 'keys'):
      out += _untyped_nones(value, f'{prefix}{key}.')
    elif value is None and not hasattr(ref, 'get_type'):
      out.append(prefix + key)
  return out


@pytest.mark.parametrize(
  'name',
  sorted(
    p.parent.parent.name
    for p in pathlib.Path(__file__)
    .parents[2]
    .glob('experiments/*/configs/default.py')
  ),
)
def test_every_default_field_can_be_overridden_from_the_command_line(name):
  assert _untyped_nones(_config(name, 'default')) == []
