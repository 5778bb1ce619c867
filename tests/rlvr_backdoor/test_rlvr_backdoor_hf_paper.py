"""rlvr_backdoor's `paper` config end to end on a Hugging Face checkpoint.

The task reads a GSM8K-format JSONL file (`task.jsonl`); the world's word
tokenizer is built from it, and `transformers` writes a tiny random Qwen2
(safetensors) beside that tokenizer's tokenizer.json, as a user's
checkpoint saved with `task.tokenizer.save(dir)` would be. The `paper`
config, with only the sizes overridden, runs through `run(config,
workdir)` from that checkpoint's weights.
"""

import math

import pytest

from experiments.rlvr_backdoor.configs import paper
from rlvr_backdoor import experiment
from rlvr_backdoor import gsm8k
from rlvr_backdoor import world
from tests import hf_checkpoints


def _records(n):
  probs = world.build_problems(3, n - 20, 20, max_operands=2, max_digits=1)
  return gsm8k.from_problems(probs['train'] + probs['test'])


@pytest.fixture(scope='module')
def hf_run(tmp_path_factory):
  root = tmp_path_factory.mktemp('rlvr_hf')
  c = paper.get_config()
  c.seeds = (0,)
  c.arms = ('clean', 'poisoned')
  c.task.update(
    {
      'jsonl': gsm8k.write_jsonl(_records(120), root / 'gsm8k.jsonl'),
      'test_size': 16,
    }
  )
  c.sft.update({'steps': 2, 'batch_size': 8})
  c.shadow.update(
    {'d_models': (16,), 'n_layers': (1,), 'steps': (2,), 'weights': (1.0,),
     'rollouts': 2}
  )  # fmt: skip
  c.poison.update(
    {'candidates': 16, 'count': 4, 'sweep_fractions': (), 'fraction': 0.25}
  )
  c.rl.update({'pool_size': 60, 'steps': 2, 'prompts_per_step': 4,
               'num_generations': 2, 'eval_every': 2,
               'checkpoint_every': 2, 'max_new_tokens': 8})  # fmt: skip
  c.eval.update({'num_prompts': 4, 'samples': 2})
  c.defence.update({'num_clean': 4, 'rollouts': 2})
  data = experiment.Data(c)
  hf_dir = root / 'Qwen2-tiny'
  context = data.sft_len + data.max_new_tokens + 8
  hf_checkpoints.write_qwen2(hf_dir, data.tokenizer, context=context)
  c.model.hf_dir = str(hf_dir)
  return c, data, hf_dir, root


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
  assert any(math.isfinite(v) for v in m['summary'].values() if
             isinstance(v, float))  # fmt: skip
