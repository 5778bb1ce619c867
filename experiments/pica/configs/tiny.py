"""PiCA tiny: seconds, for tests and CI."""

from experiments.pica.configs import default


def get_config():
  c = default.get_config()
  c.name = 'tiny'
  c.seeds = (0,)
  c.hazard.min_auc = 0.0  # no gate: tiny's hazard model is untrained
  c.hazard.patience = None
  c.world.update(
    {
      'num_entities': 60,
      'num_distractors': 40,
      'train_questions': 60,
      'test_questions': 20,
      'compositional_questions': 10,
    }
  )
  c.rollout.update({'max_new_tokens': 12, 'max_info_tokens': 24})
  c.model.update({'d_model': 32, 'n_layers': 1, 'd_ff': 64, 'max_seq_len': 192})
  c.sft.update({'steps': 4, 'batch_size': 8, 'log_every': 2})
  c.hazard.update(
    {
      'num_questions': 4,
      'samples_per_question': 2,
      'rollout_batch': 8,
      'steps': 3,
      'batch_size': 8,
      'log_every': 1,
      'eval_questions': 4,
      'eval_every': None,
    }
  )
  # GRPO here so the tiny run covers it; tests run PPO on tiny separately.
  # 4 x 2 = 8 rows: the batch splits over the tests' 8 CPU devices.
  c.rl.update(
    {
      'steps': 2,
      'prompts_per_step': 4,
      'num_generations': 2,
      'algorithm': 'grpo',
    }
  )
  c.eval.update({'num_questions': 4, 'batch_size': 4, 'samples': 2})
  return c
