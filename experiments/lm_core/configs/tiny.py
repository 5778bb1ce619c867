"""lm_core tiny: seconds, for tests and CI."""

from experiments.lm_core.configs import default


def get_config():
  c = default.get_config()
  c.name = 'tiny'
  c.seeds = (0,)  # a smoke test; effects need >= 3 seeds (default)
  c.world.update(
    {
      'num_entities': 60,
      'num_distractors': 40,
      'train_questions': 200,
      'test_questions': 40,
    }
  )
  c.model.update({'d_model': 32, 'n_layers': 1, 'd_ff': 64})
  c.sft.update(
    {
      'steps': 10,
      'batch_size': 8,
      'num_demonstrations': None,
      'warmup_steps': 2,
      'log_every': 2,
      'eval_every': 5,
    }
  )
  c.grpo.update(
    {
      'steps': 3,
      'prompts_per_step': 2,
      'num_generations': 4,
      'log_every': 1,
      'eval_every': 3,
    }
  )
  c.eval.num_questions = 16
  c.checkpoint_every = 3
  return c
