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

import pathlib

import jax

jax.config.update('jax_num_cpu_devices', 8)
jax.config.update('jax_platforms', 'cpu')

from common.train import xla_setup  # noqa: E402  (after the device count is set)

# Eight simulated devices share 2 cores (and pytest-xdist runs two workers):
# give their collectives time instead of XLA's 40 s abort.
xla_setup.allow_slow_cpu_collectives()
# The tests' time is mostly compilation of small programs: XLA:CPU at -O0,
# and compiled programs cached (shared by the two workers and kept between
# runs, up to 1 GiB, least recently used evicted first; `make clean` or
# deleting .pytest_cache/ empties it).
xla_setup.fast_cpu_compile()
xla_setup.use_compilation_cache(
  pathlib.Path(__file__).resolve().parent.parent / '.pytest_cache' / 'xla',
  max_bytes=2**30,
)
