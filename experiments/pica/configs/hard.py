"""PiCA hard: the issue's harder world and budget (hours on 2 CPU cores).

What `default` cuts to fit the main job, restored: 4-hop questions, 5
turns so the over-search penalty (from the 4th search) can fire, top-3
retrieval, a shorter SFT (150 steps) so multi-hop questions leave RL room,
the hazard recipe of the issue (8 samples of 500 train questions, scored
after the observation), 300 RL steps x 16 prompts x 5 generations, and
evaluation on all 600 held-out test questions (150 per hop count) plus 200
compositional ones, greedy and 4-sample EM. By its sizes (15x the
default's RL rollouts; not measured) one seed would take more CPU than the
whole main job, so `make demo` runs `default`; on a GPU node:

  python -m experiments.pica.main --workdir=runs/pica_hard \
    --config=experiments/pica/configs/hard.py
"""

from experiments.pica.configs import default


def get_config():
  c = default.get_config()
  c.name = 'hard'
  c.world.update(
    {
      'num_entities': 400,
      'max_hops': 4,
      'train_questions': 2000,
      'test_questions': 600,
      'compositional_questions': 200,
    }
  )
  c.max_prompt_len = 48
  c.rollout.update({'max_turns': 5, 'topk': 3, 'max_info_tokens': 64})
  c.model.max_seq_len = 512
  c.sft.steps = 150
  c.hazard.update(
    {
      'num_questions': 500,
      'samples_per_question': 8,
      'steps': 500,
      'eval_questions': 100,
      'eval_every': 25,
      'score_at': 'information',
    }
  )
  c.rl.update({'steps': 300, 'prompts_per_step': 16, 'num_generations': 5})
  c.eval.update({'num_questions': 200, 'batch_size': 50, 'samples': 4})
  return c
