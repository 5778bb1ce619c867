"""Test setup: JAX sees 8 simulated CPU devices.

This must run before any JAX array exists, so it lives at the top of the
root conftest, which pytest imports before any test module.

Which switch: `jax.config.update('jax_num_cpu_devices', 8)`, JAX's own
option. It is equivalent to `chex.set_n_cpu_devices(8)` (which writes
`--xla_force_host_platform_device_count=8` into `XLA_FLAGS`): both make the
CPU client with 8 devices, and JAX reads the XLA flag only when this option
is unset. The JAX option is kept because it is checked: its validator
raises if the backend already started (an array was made first), while an
XLA flag set too late is ignored silently. chex's `with_pmap` variants and
`chex.fake_pmap` use these 8 devices (`jax.device_count()`).
"""

import jax

jax.config.update('jax_num_cpu_devices', 8)
jax.config.update('jax_platforms', 'cpu')

from common.train import xla_setup  # noqa: E402  (after the device count is set)

# Eight simulated devices share 2 cores (and pytest-xdist runs two workers):
# give their collectives time instead of XLA's 40 s abort.
xla_setup.allow_slow_cpu_collectives()
