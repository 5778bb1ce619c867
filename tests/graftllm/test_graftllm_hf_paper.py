"""GraftLLM's `paper` config end to end on a Hugging Face checkpoint.

`transformers` writes a tiny random Qwen2 (safetensors) beside the task
world's word tokenizer (a checkpoint saved with `task.tokenizer.save(dir)`).
The `paper` config (its bit groups' kinds, GPTQ settings and schedules),
with only the sizes overridden, runs through `run(config, workdir)`: the
base model starts from that checkpoint, the experts are fine-tuned and
compressed into SkillPacks.
"""

import math

import numpy as np
import pytest
from flax import nnx

from common import models
from common.synthetic import safety
from experiments.graftllm.configs import paper
from graftllm import experiment
from tests import hf_checkpoints


@pytest.mark.slow  # compiles dominate
def test_paper_config_runs_end_to_end_on_the_checkpoint(tmp_path):
  c = paper.get_config()
  c.seeds = (0,)
  c.task.update({'num_knowledge': 16, 'num_arithmetic': 16})
  c.base.update({'steps': 2, 'batch_size': 8})
  c.finetune.update({'steps': 2, 'batch_size': 8, 'warmup_steps': 1})
  c.dpo.update({'steps': 2, 'batch_size': 8, 'warmup_steps': 1})
  # Ranks and bit groups that fit a d32 model; the groups keep the paper's
  # kinds (int8 / int4 / int2 with the rest).
  c.compression.update(
    {
      'mlp_rank': 8,
      'attn_rank': 8,
      'mlp_bit_groups': ((8, 1), (4, 2), (2, -1)),
      'attn_bit_groups': ((8, 1), (4, 2), (2, -1)),
      'group_size': 16,
    }
  )
  c.lora.enabled = False
  c.sweep.update({'betas': (0.5,), 'alphas': (0.3,), 'ablations': ()})
  c.sweep.bit_groups = {'all2': ((2, -1),)}
  c.router.steps = 2
  c.calibration_samples = 8
  world, _ = experiment.build_tasks(c)
  p_len, r_len = safety.lengths(world)
  hf_checkpoints.write_qwen2(
    tmp_path / 'hf', world.tokenizer, context=p_len + r_len
  )
  c.model.hf_dir = str(tmp_path / 'hf')
  m = experiment.run(c, str(tmp_path / 'work'))
  assert (tmp_path / 'work' / 'metrics.json').is_file()
  assert any(
    isinstance(v, float) and math.isfinite(v) for v in m['summary'].values()
  )


def test_hessians_are_for_kernels_only():
  # A Qwen2-style model has q/k/v biases under the same module paths as
  # the kernels; a bias has no input side, so no Hessian (it stays dense).
  cfg = models.build_config(
    {'preset': 'tiny', 'd_model': 16, 'n_layers': 1, 'd_ff': 32,
     'qkv_bias': True},
    vocab_size=12,
    max_seq_len=8,
  )  # fmt: skip
  graphdef, params = models.split(models.Transformer(cfg, rngs=nnx.Rngs(0)))
  data = {
    'tokens': np.arange(16).reshape(2, 8) % 12,
    'attention_mask': np.ones((2, 8), bool),
  }
  h = experiment.hessians(experiment.make_capture(graphdef), params, data, 2)
  assert h and all(p.endswith('/kernel') for p in h)
  assert any('k_proj' in p for p in h)
  for p, m in h.items():
    assert m.shape == (m.shape[0], m.shape[0]), p
