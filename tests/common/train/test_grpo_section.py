"""`grpo.section_fields` / `config_from_section`: one config section form."""

import ml_collections
import pytest

from common import schema
from common.train import grpo

SECTION = {
  'steps': 7,
  'prompts_per_step': 4,
  'num_generations': 3,
  'learning_rate': 1e-3,
  'temperature': 0.7,
  'epsilon': 0.2,
  'epsilon_high': 0.28,
  'beta': 0.04,
}


def test_config_from_section_maps_every_field():
  c = grpo.config_from_section(
    ml_collections.ConfigDict(SECTION), max_prompt_len=32, seed=5
  )
  assert (c.num_steps, c.prompts_per_step, c.num_generations) == (7, 4, 3)
  assert (c.temperature, c.max_prompt_len, c.seed) == (0.7, 32, 5)
  assert (c.loss.epsilon, c.loss.epsilon_high, c.loss.beta) == (0.2, 0.28, 0.04)
  assert c.loss.temperature == 0.7  # the policy that sampled


def test_section_fields_check_the_values():
  fields = {'rl': grpo.section_fields()}
  schema.validate({'rl': SECTION}, fields)
  with pytest.raises(schema.ConfigError, match=r'rl.num_generations=1 is inv'):
    schema.validate({'rl': {**SECTION, 'num_generations': 1}}, fields)
  with pytest.raises(schema.ConfigError, match="unknown field 'rl.lr'"):
    schema.validate({'rl': {**SECTION, 'lr': 1.0}}, fields)
