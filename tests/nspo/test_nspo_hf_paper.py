"""NSPO's `paper` config end to end on a Hugging Face checkpoint.

`transformers` writes a tiny random Qwen2 (safetensors) beside the safety
task's word tokenizer (a checkpoint saved with `task.tokenizer.save(dir)`).
The `paper` config (its null-space sites, rule, arms and re-projection),
with only the sizes overridden, runs through `run(config, workdir)` from
that checkpoint: SFT, the null spaces of the Qwen2 MLP inputs, GRPO, NSPO
and the re-projection variant.
"""

import math

import pytest

from experiments.nspo.configs import paper
from nspo import experiment
from tests import hf_checkpoints


@pytest.mark.slow  # compiles dominate
def test_paper_config_runs_end_to_end_on_the_checkpoint(tmp_path):
  c = paper.get_config()
  c.seeds = (0,)
  c.task.update({'num_knowledge': 8, 'num_arithmetic': 8, 'num_topics': 2})
  c.sft.update({'steps': 2, 'batch_size': 8, 'warmup_steps': 1})
  c.nspo.update({'batch_size': 8})
  c.rl.update({'steps': 2, 'prompts_per_step': 8, 'num_generations': 2,
               'eval_every': 2, 'checkpoint_every': 2,
               'reproject_every': 1})  # fmt: skip
  hf_checkpoints.for_safety_task(c, tmp_path / 'hf')
  m = experiment.run(c, str(tmp_path / 'work'))
  assert (tmp_path / 'work' / 'metrics.json').is_file()
  for arm in c.rl.arms:
    assert math.isfinite(m['summary'][f'{arm}_alignment_tax']), arm
