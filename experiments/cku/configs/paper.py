"""CKU at the paper's settings (for accelerators).

Shi et al. (ACL 2025): Llama2-7B-Chat, neuron locking rate 0.8 in MLP
layers 8-12 (of 32), gradient ascent on harmful responses plus a retain
regulariser. The exact loss weights and scoring formula are not public; the
values below are the reconstruction's defaults. Set `model.hf_dir` to a
Hugging Face directory saved with the task vocabulary to start from
pretrained weights.
"""

from experiments.cku.configs import default


def get_config():
  c = default.get_config()
  c.name = 'paper'
  c.task.update({'num_knowledge': 1000, 'num_arithmetic': 80, 'num_topics': 16})
  # Llama-2-7B's shape, from the llama-3.1-8b preset: full multi-head
  # attention, d_ff 11008, RoPE base 1e4 without Llama-3 scaling.
  c.model = c.model.__class__(
    {
      'preset': 'llama-3.1-8b',
      'd_ff': 11008,
      'n_kv_heads': 32,
      'rope_theta': 10000.0,
      'rope_scaling': None,
      'hf_dir': '',
    }
  )
  c.sft.update(
    {
      'steps': 2000,
      'batch_size': 128,
      'learning_rate': 1e-5,
      'warmup_steps': 100,
    }
  )
  c.cku.update(
    {
      'lock_rate': 0.8,
      'layers': (8, 9, 10, 11, 12),
      'learning_rate': 1e-5,
      'steps': 200,
      'forget_batch_size': 32,
      'retain_batch_size': 32,
      'eval_every': 20,
    }
  )
  return c
