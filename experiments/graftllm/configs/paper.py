"""GraftLLM paper settings (for accelerators; constructed in a test).

Target Llama-3.1-8B-Instruct by directory, the released code's bit groups
(`run.sh`: attention 20 x int8, 180 x int4, 800 x int2 of rank 1000; MLP
20 / 180 / 1200 of rank 1400), GPTQ groupsize 128, percdamp 0.01,
act-order, 128 calibration samples of length 2048. The paper's beta rule
replaces the fixed ranks when `mlp_rank` / `attn_rank` are 0.
"""

from experiments.graftllm.configs import default


def get_config():
  c = default.get_config()
  c.name = 'paper'
  c.seeds = (0, 1, 2)
  c.model.update({'preset': 'llama-3.1-8b', 'hf_dir': 'Llama-3.1-8B-Instruct'})
  # Paper: SFT 3 epochs, DPO 1 epoch, batch 128, cosine with 10% warmup.
  c.base.update({'steps': 1, 'batch_size': 128})
  c.finetune.update(
    {
      'steps': 3000,
      'batch_size': 128,
      'learning_rate': 5e-6,
      'warmup_steps': 300,
    }
  )
  c.dpo.update(
    {
      'steps': 1000,
      'batch_size': 128,
      'learning_rate': 5e-7,
      'warmup_steps': 100,
    }
  )
  c.compression.update(
    {
      'alpha': 0.1,
      'mlp_rank': 1400,
      'attn_rank': 1000,
      'mlp_bit_groups': ((8, 20), (4, 180), (2, 1200)),
      'attn_bit_groups': ((8, 20), (4, 180), (2, 800)),
      'group_size': 128,
    }
  )
  c.calibration_samples = 128
  return c
