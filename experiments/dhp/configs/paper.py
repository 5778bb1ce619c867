"""DHP paper: the paper's scale (64 NPUs, GBS 512) and a wider sweep.

Planning and simulation run on a CPU; the real-execution part needs 8
devices and is the same tiny model (the paper trains 2B-8B MLLMs on Ascend
910B, which this config does not attempt).
"""

from experiments.dhp.configs import default


def get_config():
  c = default.get_config()
  c.name = 'paper'
  c.simulation.update(
    {
      'cluster_sizes': [8, 16, 32, 64, 128, 256, 512, 1024],
      'num_batches': 8,
    }
  )
  c.sweep.update(
    {
      'cluster_sizes': [8, 32, 64, 256],
      'eff_half': [0.0, 1024.0, 2048.0, 4096.0],
      'inter_node_gbps': [8.7, 12.5, 25.0, 121.0],
      'ring_step_ms': [0.0, 0.05, 0.2],
    }
  )
  c.latency.update(
    {
      'cluster_sizes': [8, 16, 32, 64, 128, 256, 512, 1024],
      'batch_sizes': [128, 512, 2048],
      'repeats': 20,
    }
  )
  c.gap.update({'instances': 200, 'max_sequences': 9})
  c.train.update({'steps': 20, 'compile_warmup_steps': 5, 'batch_size': 16})
  return c
