"""Test setup: JAX sees 8 simulated CPU devices.

This must run before any JAX array exists, so it lives at the top of the
root conftest, which pytest imports before any test module.
"""

import jax

from common.train import mesh

# Eight simulated devices share 2 cores (and pytest-xdist runs two workers):
# give their collectives time instead of XLA's 40 s abort.
mesh.allow_slow_cpu_collectives()
jax.config.update('jax_num_cpu_devices', 8)
jax.config.update('jax_platforms', 'cpu')
