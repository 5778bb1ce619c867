"""CKU default: a few minutes on 2 CPU cores."""

import ml_collections

from common.train import sft_world


def get_config():
  # task / model / sft: the safety world's SFT base model (shared with NSPO).
  c = sft_world.base_config()
  c.name = 'default'
  c.cku = ml_collections.ConfigDict(
    {
      'arms': ('ga', 'ga_layers', 'cku'),
      'score': 'attribution',  # attribution | activation | gradient
      'score_batch_size': 32,
      'score_prompt': False,  # True: prompt positions count in the score
      'lock_rate': 0.8,  # the paper's neuron locking rate (NLR)
      'layers': (),  # () = the paper's layers 8-12 of 32, depth-scaled
      'loss': 'gradient_ascent',  # gradient_ascent | npo
      'retain_weight': 1.0,
      'npo_beta': 0.1,
      'learning_rate': 1e-3,
      'weight_decay': 0.0,
      'steps': 40,
      'forget_batch_size': 8,
      'retain_batch_size': 32,
      'eval_every': 5,
      'checkpoint_every': 10,  # 0: only at the end
    }
  )
  return c
