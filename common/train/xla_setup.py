"""Process-wide XLA settings, applied before JAX's backend starts.

XLA reads `XLA_FLAGS` once, when the first backend is created: a flag set
later is ignored silently, so these functions raise instead.

* `allow_slow_cpu_collectives`: simulated CPU devices (`jax_num_cpu_devices`)
  run their collectives on threads of one process. On a loaded 2-core host
  a participant can be descheduled for longer than XLA's default 40 s
  termination timeout, which aborts the process. The timeout is raised to
  5 minutes: a wait that long is a stall, not load, and it then fails the
  process (which `experiments.run_all` retries from its checkpoints).
* `fast_cpu_compile`: XLA:CPU's LLVM backend at -O0. For smoke runs (the
  `tiny` configs, the tests), whose time is mostly compilation of small
  programs: it cuts compile time by about 40% (a `tiny` NSPO run: 17.6 s of
  backend compilation at the default level, 10.8 s at -O0), and the
  compiled loops are slower (not vectorised). Leave it off for real runs.
* `use_compilation_cache`: JAX's persistent compilation cache. Programs are
  keyed by their HLO, compile options and the XLA version, so a rerun (or a
  second phase, or another experiment, that builds the same program) loads
  the executable instead of compiling it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import jax
from jax._src import xla_bridge

_SLOW_CPU_COLLECTIVE_FLAGS = (
  '--xla_cpu_collective_call_warn_stuck_timeout_seconds=60',
  '--xla_cpu_collective_call_terminate_timeout_seconds=300',
)
_FAST_COMPILE_FLAGS = ('--xla_backend_optimization_level=0',)


def add_xla_flags(new_flags: Iterable[str]) -> None:
  """Appends `--name=value` flags to `XLA_FLAGS`; a flag already named there
  keeps its value (the user's setting wins).

  Raises:
    RuntimeError: JAX's backend has started (XLA would ignore the flags).
  """
  new_flags = list(new_flags)
  current = os.environ.get('XLA_FLAGS', '')
  names = {f.split('=')[0] for f in current.split()}
  extra = [f for f in new_flags if f.split('=')[0] not in names]
  if not extra:
    return
  if xla_bridge.backends_are_initialized():
    raise RuntimeError(
      f'XLA flags {extra} must be set before JAX starts its backend (before '
      'the first array or jit call); call this first thing in main.'
    )
  os.environ['XLA_FLAGS'] = ' '.join([current, *extra]).strip()


def allow_slow_cpu_collectives() -> None:
  """Raises XLA's CPU collective timeouts (warning at 60 s, abort at 300 s)."""
  add_xla_flags(_SLOW_CPU_COLLECTIVE_FLAGS)


def fast_cpu_compile() -> None:
  """Compiles XLA:CPU programs with LLVM at -O0 (smoke runs only)."""
  add_xla_flags(_FAST_COMPILE_FLAGS)


def use_compilation_cache(
  directory: str | os.PathLike,
  min_compile_secs: float = 0.5,
  max_bytes: int | None = None,
) -> None:
  """Caches compiled programs in `directory` (created if missing).

  Args:
    directory: the cache folder; safe to share between processes.
    min_compile_secs: programs that compiled faster are not cached (JAX's
      default is 1 s; a `tiny` run's train steps take about 0.5-3 s).
    max_bytes: evict the least recently used programs above this size
      (None: no limit).
  """
  if max_bytes is not None and max_bytes < 1:
    raise ValueError(f'max_bytes={max_bytes}: must be >= 1 or None.')
  os.makedirs(directory, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', os.fspath(directory))
  jax.config.update(
    'jax_persistent_cache_min_compile_time_secs', float(min_compile_secs)
  )
  jax.config.update(
    'jax_compilation_cache_max_size', -1 if max_bytes is None else max_bytes
  )
