"""CKU tiny: seconds, for tests and CI (numbers are not meaningful)."""

from experiments.cku.configs import default


def get_config():
  c = default.get_config()
  c.name = 'tiny'
  c.task.update({'num_knowledge': 8, 'num_arithmetic': 8, 'num_topics': 2})
  c.model.update({'d_model': 32, 'n_layers': 1, 'd_ff': 64})
  c.sft.update({'steps': 4, 'batch_size': 8, 'warmup': 1})
  c.cku.update(
    {
      'steps': 2,
      'eval_every': 1,
      'score_batch_size': 8,
      'forget_batch_size': 8,
      'retain_batch_size': 8,
    }
  )
  return c
