"""Tests for common.schema: declared fields, checked before any work."""

import math

import ml_collections
import pytest

from common import schema

FIELDS = {
  'seeds': schema.seeds(),
  'arms': schema.names(('sft', 'spin', 'tpaw')),
  'sft': {
    'steps': schema.integer(1),
    'batch_size': schema.integer(1, 512),
    'learning_rate': schema.number(0.0, open_low=True),
    'dropout': schema.probability(open_high=True),
    'mode': schema.choice(('greedy', 'sample')),
    'hf_dir': schema.optional(schema.string(non_empty=True)),
    'shuffle': schema.boolean(),
    'betas': schema.sequence(schema.number(0.0), length=2),
    'extra': schema.anything(),
  },
}


def _config(**sft):
  values = dict(
    steps=10,
    batch_size=8,
    learning_rate=1e-3,
    dropout=0.0,
    mode='greedy',
    hf_dir=None,
    shuffle=True,
    betas=(0.9, 0.99),
    extra={'anything': [1, 2]},
  )
  values.update(sft)
  return ml_collections.ConfigDict(
    {'seeds': (0, 1, 2), 'arms': ('sft', 'tpaw'), 'sft': values}
  )


def _error(config) -> str:
  with pytest.raises(schema.ConfigError) as info:
    schema.validate(config, FIELDS, experiment='tpaw')
  return str(info.value)


def test_accepts_a_valid_config():
  schema.validate(_config(), FIELDS, experiment='tpaw')
  schema.validate(_config(hf_dir='/models/qwen'), FIELDS)
  schema.validate(_config().to_dict(), FIELDS)


def test_config_error_is_a_value_error():
  assert issubclass(schema.ConfigError, ValueError)


def test_unknown_field_suggests_the_close_one_and_lists_the_rest():
  config = _config()
  config.sft.stpes = 3
  message = _error(config)
  assert "unknown field 'sft.stpes' in the tpaw config" in message
  assert 'did you mean sft.steps?' in message
  assert 'the fields of config.sft are: batch_size, betas,' in message


def test_unknown_top_level_field_without_a_close_match():
  config = _config()
  config.not_a_field = 1
  message = _error(config)
  assert "unknown field 'not_a_field'" in message
  assert 'did you mean' not in message
  assert 'the fields of config are: arms, seeds, sft' in message


def test_missing_field_is_named():
  config = _config()
  del config.sft['mode']
  assert _error(config) == 'config.sft.mode is missing from the config'


@pytest.mark.parametrize(
  'field, value, allowed',
  [
    ('steps', 0, 'an integer >= 1'),
    ('steps', -4, 'an integer >= 1'),
    ('steps', 2.0, 'an integer >= 1'),
    ('steps', True, 'an integer >= 1'),
    ('batch_size', 513, 'an integer in [1, 512]'),
    ('learning_rate', 0.0, 'a finite number in (0.0, inf)'),
    ('learning_rate', -1.0, 'a finite number in (0.0, inf)'),
    ('learning_rate', math.nan, 'a finite number in (0.0, inf)'),
    ('learning_rate', '1e-3', 'a finite number in (0.0, inf)'),
    ('dropout', 1.0, 'a finite number in [0.0, 1.0)'),
    ('mode', 'beam', "one of ('greedy', 'sample')"),
    ('hf_dir', '', 'a non-empty string (or None)'),
    ('shuffle', 1, 'True or False'),
    ('betas', (0.9,), 'a sequence of exactly 2 items'),
  ],
)
def test_bad_value_names_path_value_and_allowed(field, value, allowed):
  message = _error(_config(**{field: value}))
  assert message == (
    f'config.sft.{field}={value!r} is invalid; allowed: {allowed}'
  )


def test_sequence_items_are_checked_with_their_index():
  message = _error(_config(betas=(0.9, -1.0)))
  assert message.startswith('config.sft.betas[1]=-1.0 is invalid')


def test_seeds_and_names():
  config = _config()
  config.seeds = (0, 0)
  assert 'without repeats' in _error(config)
  config = _config()
  config.seeds = ()
  assert 'at least 1 items' in _error(config)
  config = _config()
  config.arms = ('sft', 'dpo')
  assert _error(config) == (
    "config.arms: unknown name 'dpo'; allowed: ('sft', 'spin', 'tpaw')"
  )


def test_sub_config_must_be_a_config():
  config = _config().to_dict()
  config['sft'] = 3
  assert _error(config) == (
    'config.sft=3 is invalid; allowed: a ConfigDict of fields'
  )


def test_fail_for_cross_field_checks():
  with pytest.raises(schema.ConfigError, match=r'config.a.b=3 is invalid; '):
    schema.fail('a.b', 3, 'at most config.a.c')


def test_dataclass_kwargs_runs_the_dataclass_checks():
  import dataclasses

  @dataclasses.dataclass
  class World:
    seed: int = 0
    size: int = 4

    def __post_init__(self):
      if self.size < 2:
        raise ValueError(f'World.size={self.size}; allowed: >= 2')

  fields = {'world': schema.dataclass_kwargs(World, seed=0)}
  schema.validate({'world': {'size': 3}}, fields)
  with pytest.raises(schema.ConfigError) as info:
    schema.validate({'world': {'size': 1}}, fields)
  assert str(info.value) == 'config.world: World.size=1; allowed: >= 2'
  with pytest.raises(schema.ConfigError, match="unknown field 'world.sise'"):
    schema.validate({'world': {'sise': 3}}, fields)
  with pytest.raises(schema.ConfigError, match='did you mean world.size'):
    schema.validate({'world': {'sise': 3}}, fields)
