"""Config validation (tiny/default/paper) and bad-input errors."""

import pytest

from common.schema import ConfigError
from e3tir import config as config_lib
from experiments import registry
from experiments.e3tir.configs import default
from experiments.e3tir.configs import paper
from experiments.e3tir.configs import tiny


@pytest.mark.parametrize('mod', [tiny, default, paper])
def test_configs_validate(mod):
  config_lib.validate_config(mod.get_config())


def test_paper_config_is_the_recipe():
  c = paper.get_config()
  assert c.model.preset == 'qwen2.5-3b' and c.model.hf_dir
  assert c.rl.learning_rate == 1e-6 and c.rl.num_generations == 8
  assert c.rollout.max_calls == 3 and c.reward.format_penalty == -1.0
  assert config_lib.num_experts(c) < 0.1 * (c.task.qa_train + c.task.math_train)


@pytest.mark.parametrize(
  'path, value, match',
  [
    (('e3tir', 'branches_per_anchor'), 0, 'e3tir.branches_per_anchor'),
    (('e3tir', 'num_anchors'), 9, 'anchor positions'),
    (('e3tir', 'combine'), 'max', 'e3tir.combine'),
    (('budget', 'expert_fraction'), 0.0, 'budget.expert_fraction'),
    (('eval', 'num_math'), 10_000, 'eval.num_math'),
    (('arms',), ('e3tir', 'luffy'), 'arms'),
  ],
)
def test_bad_config(path, value, match):
  c = default.get_config()
  node = c
  for p in path[:-1]:
    node = node[p]
  node[path[-1]] = value
  with pytest.raises(ConfigError, match=match):
    config_lib.validate_config(c)


def test_registered():
  assert registry.EXPERIMENTS['e3tir'] == 'e3tir.experiment:run'
