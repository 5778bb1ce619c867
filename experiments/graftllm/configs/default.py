"""GraftLLM default: a few minutes on 2 CPU cores, 3 paired seeds."""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.name = 'default'
  c.seeds = (0, 1, 2)
  c.checkpoint_every = 0  # only at the end of each stage
  c.task = ml_collections.ConfigDict(
    {'seed': 0, 'num_knowledge': 48, 'num_arithmetic': 64}
  )
  c.model = ml_collections.ConfigDict(
    {'preset': 'tiny', 'd_model': 64, 'n_layers': 2, 'd_ff': 128, 'hf_dir': ''}
  )
  c.base = ml_collections.ConfigDict(
    {'steps': 400, 'batch_size': 32, 'learning_rate': 3e-3, 'warmup_steps': 20}
  )
  c.finetune = ml_collections.ConfigDict(
    {'steps': 150, 'batch_size': 16, 'learning_rate': 2e-3, 'warmup_steps': 10}
  )
  # DPO after SFT (0 steps: SFT only).
  c.dpo = ml_collections.ConfigDict(
    {
      'steps': 20,
      'batch_size': 8,
      'learning_rate': 1e-4,
      'warmup_steps': 0,
      'beta': 0.1,
    }
  )
  c.compression = ml_collections.ConfigDict(
    {
      'alpha': 0.1,
      'attn_beta': 0.9,
      'mlp_beta': 0.9,
      'mlp_rank': 0,
      'attn_rank': 0,
      'mlp_bit_groups': ((8, 2), (4, 6), (2, -1)),
      'attn_bit_groups': (),
      'group_size': 32,
      'damp': 0.01,
      'act_order': True,
    }
  )
  c.sweep = ml_collections.ConfigDict(
    {
      'betas': (0.5, 0.75, 0.99),
      'alphas': (0.02, 0.3),
      'bit_groups': {
        'all2': ((2, -1),),
        'all4': ((4, -1),),
        'all8': ((8, -1),),
      },
      'ablations': ('uniform', 'rtn', 'no_act_order'),
    }
  )
  c.merge = ml_collections.ConfigDict(
    {'ta_lambda': 1.0, 'ties_density': 0.2, 'ties_lambda': 1.0, 'dare_p': 0.5}
  )
  c.router = ml_collections.ConfigDict(
    {'hidden': 32, 'steps': 100, 'learning_rate': 1e-2}
  )
  # LoRA baseline at the main pack's byte size (steps: finetune's).
  c.lora = ml_collections.ConfigDict(
    {'enabled': True, 'learning_rate': 1e-2, 'alpha': 8.0}
  )
  c.calibration_samples = 64
  return c
