"""Test setup: JAX sees 8 simulated CPU devices.

This must run before any JAX array exists, so it lives at the top of the
root conftest, which pytest imports before any test module.
"""

import jax

jax.config.update('jax_num_cpu_devices', 8)
jax.config.update('jax_platforms', 'cpu')
