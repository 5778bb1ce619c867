"""DHP: simulated throughput vs static baselines, planner latency, optimality
gap, and a tiny transformer trained with DHP on 8 simulated CPU devices.

  python -m experiments.dhp.main --workdir=runs/dhp \
    --config=experiments/dhp/configs/default.py
"""

import jax

from experiments import common_main

if __name__ == '__main__':
  # The real-execution part needs 8 devices; on CPU they are simulated.
  jax.config.update('jax_num_cpu_devices', 8)
  common_main.launch('dhp.experiment:run', __file__)
