"""e3tir's `paper` config end to end on a Hugging Face checkpoint.

`transformers` writes a tiny random Qwen2 (safetensors) beside the world's
word tokenizer (a checkpoint saved with `task.tokenizer.save(dir)`), and
the training set is a Tool-Star-format JSONL file (`task.data_file`, with
expert trajectories). The `paper` config, with only the sizes overridden,
runs through `run(config, workdir)` from that checkpoint.
"""

import math

import pytest

from e3tir import data as data_lib
from e3tir import experiment
from experiments.e3tir.configs import paper
from tests import hf_checkpoints


@pytest.fixture(scope='module')
def hf_run(tmp_path_factory):
  root = tmp_path_factory.mktemp('e3tir_hf')
  c = paper.get_config()
  c.seeds = (0,)
  c.arms = ('zero_rl', 'sft_rl', 'e3tir')
  c.task.update({'num_entities': 40, 'num_distractors': 10, 'qa_train': 40,
                 'qa_test': 16, 'math_train': 40, 'math_test': 16,
                 'max_operands': 2, 'max_digits': 1,
                 'ops': ('+', '-')})  # fmt: skip
  c.rollout.update({'max_new_tokens': 12, 'max_obs_tokens': 28})
  c.base.update({'steps': 1, 'batch_size': 8})
  c.sft.update({'batch_size': 8})
  c.budget.update({'warmup_steps': 2, 'rl_steps': 2})
  c.rl.update({'prompts_per_step': 2, 'num_generations': 2})
  c.e3tir.update(
    {'prompts_per_step': 2, 'num_self': 1, 'num_anchors': 1,
     'branches_per_anchor': 1}
  )  # fmt: skip
  c.eval.update({'num_math': 4, 'num_qa': 4, 'every': 2})
  data = experiment.Data(c)
  # The world's own records as a Tool-Star file: what `task.data_file`
  # reads in place of the embedded training set.
  c.task.data_file = data_lib.write_jsonl(
    root / 'tool_star.jsonl', list(data.base_records) + list(data.train)
  )
  hf_dir = root / 'Qwen2-tiny'
  hf_checkpoints.write_qwen2(hf_dir, data.tokenizer, context=data.capacity)
  c.model.hf_dir = str(hf_dir)
  return c, data, hf_dir, root


def test_the_data_file_gives_the_same_records(hf_run):
  c, data, _, _ = hf_run
  again = experiment.Data(c)

  def questions(d):
    return sorted(r.question for r in list(d.base_records) + list(d.train))

  assert questions(again) == questions(data)


def test_the_model_is_the_checkpoint_and_another_tokenizer_is_refused(
  hf_run, tmp_path
):
  c, data, hf_dir, _ = hf_run
  hf_checkpoints.assert_loads_and_refuses(
    lambda cfg: experiment.init_model(cfg, data, seed=0), c, hf_dir, tmp_path
  )


@pytest.mark.slow  # compiles dominate
def test_paper_config_runs_end_to_end_on_the_checkpoint(hf_run):
  c, _, _, root = hf_run
  m = experiment.run(c, str(root / 'work'))
  assert (root / 'work' / 'metrics.json').is_file()
  for arm in c.arms:
    assert any(
      k.startswith(arm) and isinstance(v, float) and math.isfinite(v)
      for k, v in m['summary'].items()
    ), arm
