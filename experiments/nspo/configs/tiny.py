"""NSPO tiny: tests and CI; small enough for seconds of compute, big enough
to show the effect.

Measured (2 shared CPU cores, ~100 s wall under load, most of it compiling):
SFT base general accuracy 0.5625 (16 general examples); after 8 GRPO steps
at lr 3e-3 the alignment tax is 0.50 for plain GRPO and 0.00 for NSPO
(seed 0; seed 1: base 0.625, taxes 0.5625 and 0.00).
"""

from experiments.nspo.configs import default


def get_config():
  c = default.get_config()
  c.name = 'tiny'
  c.seeds = (0,)  # a smoke test; effects need >= 3 seeds (default)
  c.task.update({'num_knowledge': 8, 'num_arithmetic': 8, 'num_topics': 2})
  c.model.update({'d_model': 32, 'n_layers': 1, 'd_ff': 64})
  c.sft.update({'steps': 300, 'batch_size': 16, 'warmup_steps': 10})
  c.nspo.update({'value': 1e-2, 'allow_frozen': True, 'batch_size': 8})
  c.rl.update(
    {
      'steps': 8,
      'prompts_per_step': 8,
      'num_generations': 4,
      'learning_rate': 3e-3,
      'eval_every': 4,
      'checkpoint_every': 4,
    }
  )
  return c
