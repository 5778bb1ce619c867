"""NSPO at the paper's settings (for accelerators).

Niu et al. (ICLR 2026) and the released code (ivanniu/NSPO, verl):
Qwen2.5-7B-Instruct, GRPO with rollout.n=5, train batch 320 prompts, lr
1e-6, no KL, clip 0.2, null spaces of the MLP linear inputs (gate/up/down)
from ~1k general sequences with the relative threshold 5e-5 (the code; 5e-4
per summaries of the paper), the accumulated drift re-projected every 5
steps. Set `model.hf_dir` to a Hugging Face directory saved with the task
vocabulary to start from pretrained weights; without it the Qwen2.5-7B
shape is trained from scratch on the synthetic task.
"""

from experiments.nspo.configs import default


def get_config():
  c = default.get_config()
  c.name = 'paper'
  c.task.update({'num_knowledge': 1000, 'num_arithmetic': 80, 'num_topics': 16})
  c.model = c.model.__class__({'preset': 'qwen2.5-7b', 'hf_dir': ''})
  c.sft.update(
    {
      'steps': 2000,
      'batch_size': 128,
      'learning_rate': 1e-5,
      'warmup_steps': 100,
    }
  )
  c.nspo.update(
    {
      'sites': ('mlp_in', 'mlp_hidden'),
      'rule': 'relative',
      'value': 5e-5,
      'allow_frozen': True,  # the code's P = 0 when nothing is null
      'batch_size': 64,
    }
  )
  c.rl.update(
    {
      'arms': ('grpo', 'nspo', 'nspo_reproject'),
      'steps': 35,  # one epoch of ~11k prompts at 320 per step
      'prompts_per_step': 320,
      'harmful_fraction': 1.0,  # safety prompts only, as the paper
      'num_generations': 5,
      'learning_rate': 1e-6,
      'reproject_every': 5,
      'trainable': r'.*',
      'eval_every': 5,
    }
  )
  return c
