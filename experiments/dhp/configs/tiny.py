"""DHP tiny: seconds of planning and a 2-step real run, for tests and CI."""

from experiments.dhp.configs import default


def get_config():
  c = default.get_config()
  c.name = 'tiny'
  c.simulation.update(
    {
      'distributions': ['long_tail', 'uniform'],
      'cluster_sizes': [8, 16],
      'batch_size': 48,
      'num_batches': 1,
      'utilisation_devices': 8,
    }
  )
  c.sweep.update(
    {
      'cluster_sizes': [8],
      'eff_half': [2048.0],
      'inter_node_gbps': [8.7],
      'ring_step_ms': [0.05],
    }
  )
  c.latency.update(
    {'cluster_sizes': [8, 16], 'batch_sizes': [32], 'repeats': 2}
  )
  c.gap.update({'instances': 6, 'max_sequences': 4, 'max_devices': 6})
  c.calibration.update(
    {'degrees': [1, 2], 'lengths': [16, 32], 'repeats': 1, 'cluster_sizes': [8]}
  )
  c.train.update(
    {
      'steps': 2,
      'compile_warmup_steps': 1,
      'batch_size': 3,
      'max_len': 24,
      'len_mu': 2.5,
    }
  )
  return c
