"""TPAW default: the main job's config (a few minutes on 2 CPU cores).

A tiny word-level LM, SFT'd on multi-step arithmetic with calculator
traces to a partial held-out exact match, then 4 iterations of each arm
from that warm start, over 3 paired seeds.
"""

import ml_collections

from tpaw import experiment


def get_config():
  c = ml_collections.ConfigDict()
  c.name = 'default'
  c.seeds = (0, 1, 2)
  c.data = ml_collections.ConfigDict(
    {
      'source': 'arithmetic',  # or 'chat_jsonl', 'prompt_completion_jsonl'
      'path': '',
      'eval_path': '',
      'prompt_len': 12,
      'response_len': 26,
      'num_train': 256,
      'num_eval': 128,
    }
  )
  # common.synthetic.ArithmeticConfig fields: 2-3 one-digit operands.
  c.arithmetic = ml_collections.ConfigDict(
    {
      'seed': 0,
      'min_operands': 2,
      'max_operands': 3,
      'max_digits': 1,
      'ops': ('+', '-', '*'),
      'word_problem_prob': 0.0,
      'train_size': 256,
      'test_size': 128,
    }
  )
  c.model = ml_collections.ConfigDict(
    {'preset': 'tiny', 'd_model': 64, 'n_layers': 2, 'd_ff': 128, 'hf_dir': ''}
  )
  c.sft = ml_collections.ConfigDict(
    {
      'steps': 300,
      'batch_size': 32,
      'learning_rate': 3e-3,
      'warmup_steps': 20,
      'checkpoint_every': 0,
    }
  )
  c.selfplay = ml_collections.ConfigDict(
    {
      'iterations': 4,
      'steps_per_iteration': 20,
      'batch_size': 32,
      'learning_rate': 3e-4,
      'lam': 0.1,
      'eta': 6.0,
      'gamma': 0.5,
      'n_max': 3,
      'opponent_window': 3,
      'spin_opponent_window': 1,
      'temperature': 1.0,
      'logprob_batch_size': 128,
      'checkpoint_every': 0,
      'log_every': 10,
    }
  )
  c.arms = experiment.ARMS
  c.eval = ml_collections.ConfigDict({'batch_size': 128})
  return c
