"""Config validation (tiny/default/ablations/paper) and bad-input errors."""

import pytest

from common.schema import ConfigError
from e3tir import config as config_lib
from experiments import registry
from experiments.e3tir.configs import ablations
from experiments.e3tir.configs import default
from experiments.e3tir.configs import paper
from experiments.e3tir.configs import tiny


@pytest.mark.parametrize('mod', [tiny, default, ablations, paper])
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
    (('task', 'min_operands'), 4, 'task.min_operands'),
    (('task', 'min_digits'), 3, 'task.min_digits'),
    (('base', 'answer_fraction'), 1.0, 'base.answer_fraction'),
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


def test_split_base_is_disjoint_by_fact():
  """Hand-computed: 4 math problems and 3 qa records, two of them
  paraphrases of one fact; fraction 0.5 sends round(0.5 * 4) = 2 math
  problems and one whole qa fact group (>= round(0.5 * 3) = 2 records, or
  one single record plus another group) to the base."""
  from e3tir import data as data_lib
  from e3tir import experiment

  R = data_lib.Record
  recs = [R(f'{i} + 1', (str(i + 1),), 'math') for i in range(4)] + [
    R('Who founded A?', ('Kalo',), 'qa'),
    R('Which person started A?', ('Kalo',), 'qa'),
    R('Where is B?', ('Varen',), 'qa'),
  ]
  base, pool = experiment.split_base(recs, 0.5, seed=0)
  assert len(base) + len(pool) == len(recs)
  assert not {r.question for r in base} & {r.question for r in pool}
  assert sum(r.ability == 'math' for r in base) == 2
  # Paraphrases never straddle the split.
  sides = {r.question: r in base for r in recs}
  assert sides['Who founded A?'] == sides['Which person started A?']
  assert sum(r.ability == 'qa' for r in base) >= 2
  assert [r for r in recs if r in pool] == pool  # original order
  with pytest.raises(ValueError, match='base.answer_fraction'):
    experiment.split_base(recs, 1.0, seed=0)


def test_default_report_names_the_ablations_it_leaves_out():
  from e3tir import experiment
  from experiments.e3tir.configs import ablations
  from experiments.e3tir.configs import default

  notes = experiment._missing_ablations(default.get_config())
  assert len(notes) == 1 and 'e3tir_no_aagd' in notes[0]
  assert 'configs/ablations.py' in notes[0]
  assert experiment._missing_ablations(ablations.get_config()) == []


@pytest.mark.parametrize('mod', [tiny, default, ablations, paper])
def test_every_warm_up_arm_has_its_overrides(mod):
  """Each E3-TIR arm a config names maps to its warm-up overrides (a
  module-level name once shadowed this table and every run crashed)."""
  from e3tir import experiment

  for arm in mod.get_config().arms:
    if arm.startswith('e3tir'):
      assert isinstance(experiment.ABLATIONS[arm], dict), arm
  assert experiment.ABLATIONS['e3tir_no_branch'] == {'branch': False}
