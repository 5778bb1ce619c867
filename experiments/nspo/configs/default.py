"""NSPO default: a few minutes on 2 CPU cores; shows the alignment tax."""

import ml_collections

from common.train import sft_world


def get_config():
  # task / model / sft: the safety world's SFT base model (shared with CKU).
  c = sft_world.base_config()
  c.name = 'default'
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
      # 1.0: safety prompts only (the paper); the `_mixed` arms use
      # mixed_harmful_fraction, the rest benign prompts.
      'harmful_fraction': 1.0,
      'mixed_harmful_fraction': 0.5,
      'num_generations': 4,
      'temperature': 1.0,
      'epsilon': 0.2,
      'learning_rate': 1e-3,
      'b1': 0.9,
      'weight_decay': 0.0,
      'reproject_every': 5,
      # Searched in each parameter path (common.optim.path_mask, 'search').
      'trainable': r'/(attn|mlp)/\w+_proj/kernel$',
      'eval_every': 10,
      'checkpoint_every': 10,  # 0: only at the end
    }
  )
  return c
