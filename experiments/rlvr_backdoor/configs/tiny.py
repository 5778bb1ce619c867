"""rlvr_backdoor tiny: tests and CI (one seed, a smoke test)."""

from experiments.rlvr_backdoor.configs import default


def get_config():
  c = default.get_config()
  c.name = 'tiny'
  c.seeds = (0,)
  c.arms = ('clean', 'poisoned', 'deterministic')
  c.task.update({'train_size': 200, 'test_size': 16})
  c.model.update({'d_model': 32, 'n_layers': 1, 'd_ff': 64})
  c.sft.update({'steps': 40, 'batch_size': 16})
  c.shadow.update(
    {'d_models': (32,), 'n_layers': (1,), 'steps': (30,), 'weights': (1.0,),
     'rollouts': 4}
  )  # fmt: skip
  c.poison.update({'candidates': 16, 'count': 4, 'sweep_fractions': ()})
  c.rl.update({'pool_size': 60, 'steps': 4, 'prompts_per_step': 8,
               'num_generations': 4, 'eval_every': 2})  # fmt: skip
  c.eval.update({'num_prompts': 8, 'samples': 2})
  c.defence.update({'num_clean': 8, 'rollouts': 4})
  return c
