"""DHP default: the main job's config (about 5 CPU minutes; 23 minutes of wall
time on the shared 2-core machine at load 15)."""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = 'default'
  c.seed = 0
  # Cost model: a preset ('flexsp' or 'linear') plus CostModel overrides.
  c.cost = ml_collections.ConfigDict({'preset': 'flexsp', 'overrides': {}})
  c.simulation = ml_collections.ConfigDict(
    {
      'distributions': ['long_tail', 'multimodal', 'uniform', 'bimodal'],
      'cluster_sizes': [8, 16, 32, 64, 256, 1024],
      'batch_size': 512,  # global batch, as in the paper (GBS = 512)
      'num_batches': 1,
      'capacity': 16384,  # tokens per device
      'num_heads': 32,  # Ulysses degrees must divide it (7B: 32 heads)
      'utilisation_devices': 64,
      'utilisation_distribution': 'long_tail',
    }
  )
  c.sweep = ml_collections.ConfigDict(
    {
      'enabled': True,
      'distribution': 'long_tail',
      'cluster_sizes': [8, 64],
      'eff_half': [0.0, 2048.0],
      'inter_node_gbps': [8.7, 121.0],
      'ring_step_ms': [0.0, 0.05],
    }
  )
  c.latency = ml_collections.ConfigDict(
    {
      'cluster_sizes': [8, 64, 256, 1024],
      'batch_sizes': [128, 512],
      'repeats': 5,
    }
  )
  c.gap = ml_collections.ConfigDict(
    {
      'instances': 60,
      'max_sequences': 10,
      'max_devices': 16,
      'min_utilisation': 0.25,
      'max_utilisation': 0.95,
    }
  )
  c.calibration = ml_collections.ConfigDict(
    {
      'enabled': True,
      # Ring degrees and lengths timed on the CPU devices (< 2 min).
      'degrees': [1, 2, 4, 8],
      'lengths': [64, 128, 256],
      'repeats': 3,
      'cluster_sizes': [8, 64],  # the simulation rerun under the fit
    }
  )
  c.train = ml_collections.ConfigDict(
    {
      'enabled': True,
      'num_devices': config_dict.placeholder(int),  # all devices, at most 8
      'steps': 5,
      'compile_warmup_steps': 3,  # steps whose plans are compiled up front
      'batch_size': 10,
      'len_mu': 3.0,
      'len_sigma': 0.7,
      'max_len': 96,
      'capacity': 64,  # tokens per device: forces multi-device groups
      'cost_a1': 1e-3,
      'cost_a2': 1e-1,
      # Small-chunk penalty (tokens): without it T is linear in 1 / d and one
      # group of all ranks is optimal, so the run would not regroup.
      'cost_eff_half': 16.0,
      'learning_rate': 3e-3,
      'fast_compile': True,  # XLA backend optimisation level 0 on CPU
      'model': {
        'vocab_size': 16,
        'd_model': 16,
        'num_heads': 2,
        'n_layers': 1,
        'd_ff': 32,
        'max_len': 128,
      },
    }
  )
  return c
