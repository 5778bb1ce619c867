"""TPAW tiny: tests and CI (seconds); one seed, so no effect is claimed."""

from experiments.tpaw.configs import default


def get_config():
  c = default.get_config()
  c.name = 'tiny'
  c.seeds = (0,)
  c.data.update({'num_train': 32, 'num_eval': 16})
  c.arithmetic.update({'train_size': 32, 'test_size': 16})
  c.model.update({'d_model': 32, 'n_layers': 1, 'd_ff': 64})
  c.sft.update({'steps': 40, 'batch_size': 16})
  c.selfplay.update(
    {
      'iterations': 2,
      'steps_per_iteration': 4,
      'batch_size': 16,
      'log_every': 2,
      'logprob_batch_size': 32,
    }
  )
  c.eval.batch_size = 16
  return c
