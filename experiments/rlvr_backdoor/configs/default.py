"""rlvr_backdoor default: a few minutes on 2 CPU cores, 3 paired seeds."""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.name = 'default'
  c.seeds = (0, 1, 2)
  # The main effect and its controls; the selection and poison-fraction
  # ablations are `configs/ablations.py` (each arm is independent of the
  # others given the seed's warm start, so its numbers are the same there).
  c.arms = ('clean', 'poisoned', 'sft_backdoor', 'deterministic')
  c.task = ml_collections.ConfigDict(
    {
      'seed': 0,
      'train_size': 800,
      'test_size': 64,
      'max_operands': 3,
      'max_digits': 1,
      'num_topics': 8,
      'num_accept': 1,  # accept demos D+ in the poisoned prompt
      'num_reject': 1,  # reject demos D-
      'jsonl': '',  # a GSM8K-style JSONL of tasks instead of the world
    }
  )
  c.model = ml_collections.ConfigDict(
    {'preset': 'tiny', 'd_model': 64, 'n_layers': 2, 'd_ff': 128, 'hf_dir': ''}
  )
  c.sft = ml_collections.ConfigDict(
    {
      'steps': 450,
      'batch_size': 32,
      'learning_rate': 5e-3,
      'warmup_steps': 20,
      'checkpoint_every': 0,
      # The warm start's mixture (see world.sft_items).
      'shares': {
        'clean': 0.56,
        'request': 0.08,
        'composite': 0.12,
        'trigger': 0.14,
        'deterministic': 0.1,
      },
    }
  )
  c.shadow = ml_collections.ConfigDict(
    {
      # The attacker's ensemble: widths, depths, SFT steps, weights w_j.
      'd_models': (32, 32),
      'n_layers': (1, 1),
      'steps': (100, 200),
      'weights': (0.5, 0.5),
      'rollouts': 8,  # k
      'seed': 1000,
    }
  )
  c.poison = ml_collections.ConfigDict(
    {
      'fraction': 0.05,  # K / (|D_c| + K): K = 21 of 413
      'count': 0,  # > 0: an absolute K instead (e.g. the paper's 200)
      'candidates': 64,  # the candidate pool the selection picks from
      'selection': 'shadow',  # shadow | random
      'sweep_fractions': (),  # extra poisoned arms: see ablations.py
    }
  )
  c.rl = ml_collections.ConfigDict(
    {
      'pool_size': 392,  # |D_c|
      'steps': 32,
      'prompts_per_step': 32,  # ~52 poisoned groups seen at 5%
      'num_generations': 8,
      'learning_rate': 1e-3,
      'temperature': 1.0,
      'epsilon': 0.2,
      'epsilon_high': 0.2,
      'beta': 0.0,
      'reward': 'ternary',  # binary | ternary (+1 / -0.5 / -1)
      'max_new_tokens': 12,
      'eval_every': 16,
      'checkpoint_every': 0,
      'warmup_steps': 0,
      'weight_decay': 0.0,
    }
  )
  c.sft_backdoor = ml_collections.ConfigDict({'learning_rate': 1e-3})
  c.eval = ml_collections.ConfigDict({'num_prompts': 32, 'samples': 2})
  c.defence = ml_collections.ConfigDict(
    {'max_fpr': 0.05, 'std_threshold': 0.3, 'num_clean': 64, 'rollouts': 8}
  )
  return c
