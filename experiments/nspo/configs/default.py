"""NSPO default: a few minutes on 2 CPU cores; shows the alignment tax."""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.name = 'default'
  c.seed = 0
  c.task = ml_collections.ConfigDict(
    {
      'seed': 0,
      'num_knowledge': 48,
      'num_arithmetic': 48,
      'num_topics': 8,
      'heldout_templates': 1,
      'sft_refusal_share': 0.25,
    }
  )
  # A common.models preset plus overrides; hf_dir loads a Hugging Face
  # directory instead (its vocabulary must cover the task tokenizer's).
  c.model = ml_collections.ConfigDict(
    {
      'preset': 'tiny',
      'd_model': 64,
      'n_layers': 2,
      'd_ff': 128,
      'hf_dir': '',
    }
  )
  c.sft = ml_collections.ConfigDict(
    {
      'steps': 600,
      'batch_size': 64,
      'lr': 3e-3,
      'warmup': 50,
      'weight_decay': 0.0,
    }
  )
  c.nspo = ml_collections.ConfigDict(
    {
      'sites': ('mlp_in', 'mlp_hidden', 'attn_in', 'attn_out'),
      'rule': 'relative',  # relative | absolute | energy | min_ratio
      'value': 1e-3,
      'representation': 'auto',  # auto | dense | complement | null_basis
      'allow_frozen': False,
      'batch_size': 32,
    }
  )
  c.rl = ml_collections.ConfigDict(
    {
      'arms': ('grpo', 'nspo', 'nspo_reproject'),
      'steps': 60,
      'prompts_per_step': 16,
      'harmful_fraction': 0.5,
      'num_generations': 4,
      'temperature': 1.0,
      'epsilon': 0.2,
      'lr': 1e-3,
      'b1': 0.9,
      'weight_decay': 0.0,
      'reproject_every': 5,
      'trainable': r'/(attn|mlp)/\w+_proj/kernel$',
      'eval_every': 10,
    }
  )
  return c
