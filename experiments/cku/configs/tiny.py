"""CKU tiny: tests and CI; small enough for seconds of compute, big enough
to show the effect.

Measured (2 shared CPU cores, ~60 s wall under load once SFT is cached):
the SFT base recalls every recipe (forget accuracy 1.0) with retain
accuracy 0.5625 (16 general examples); after 20 GA steps at lr 3e-3 every
arm forgets (0.0), and retain accuracy is 0.375 for plain GA and 0.5625
for CKU (seed 0; seed 1: base recall 0.5, GA 0.1875, CKU 0.625).
"""

from experiments.cku.configs import default


def get_config():
  c = default.get_config()
  c.name = 'tiny'
  c.seeds = (0,)  # a smoke test; effects need >= 3 seeds (default)
  c.task.update({'num_knowledge': 8, 'num_arithmetic': 8, 'num_topics': 2})
  c.model.update({'d_model': 32, 'n_layers': 1, 'd_ff': 64})
  c.sft.update({'steps': 300, 'batch_size': 16, 'warmup_steps': 10})
  c.cku.update(
    {
      'steps': 20,
      'eval_every': 5,
      'checkpoint_every': 10,
      'learning_rate': 3e-3,
      'score_batch_size': 8,
      'forget_batch_size': 8,
      'retain_batch_size': 8,
    }
  )
  return c
