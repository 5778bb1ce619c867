"""e3tir tiny: tests and CI (one seed, four arms, a few steps)."""

from experiments.e3tir.configs import default


def get_config():
  c = default.get_config()
  c.name = 'tiny'
  c.seeds = (0,)
  c.arms = ('zero_rl', 'sft_rl', 'sft_rl_matched', 'e3tir')
  c.task.update({'num_entities': 40, 'num_distractors': 10, 'qa_train': 40,
                 'qa_test': 16, 'math_train': 40, 'math_test': 16})  # fmt: skip
  c.model.update({'d_model': 32, 'n_layers': 1, 'd_ff': 64})
  c.base.update({'steps': 20, 'batch_size': 16})
  c.sft.update({'batch_size': 16})
  c.budget.update({'warmup_steps': 2, 'rl_steps': 2})
  c.rl.update({'prompts_per_step': 2, 'num_generations': 4})
  c.e3tir.update(
    {'prompts_per_step': 2, 'num_self': 1, 'num_anchors': 1}
  )  # 2 x (1 + 1 + 2) = 8 rows
  c.eval.update({'num_math': 4, 'num_qa': 4, 'every': 4})
  return c
