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
  # Llama-2-7B shape: the closest preset is llama-3.1-8b's 32 layers.
  c.model = c.model.__class__(
    {'preset': 'llama-3.1-8b', 'd_ff': 11008, 'd_model': 4096, 'hf_dir': ''}
  )
  c.sft.update({'steps': 2000, 'batch_size': 128, 'lr': 1e-5, 'warmup': 100})
  c.cku.update(
    {
      'lock_rate': 0.8,
      'layers': (8, 9, 10, 11, 12),
      'lr': 1e-5,
      'steps': 200,
      'forget_batch_size': 32,
      'retain_batch_size': 32,
      'eval_every': 20,
    }
  )
  return c
