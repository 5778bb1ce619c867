"""Input checks shared by the RL maths (static shapes, eager finiteness).

Shapes are static under `jax.jit`, so shape errors are always raised. Values
are only known outside a trace: `check_finite` raises on concrete arrays and
is a no-op on tracers (inside `jit` a non-finite input propagates to the
output instead; wrap the step in `jax.experimental.checkify` or check the
metrics to catch it there).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def check_rank(name: str, x: jax.Array, rank: int, dims: str) -> None:
  """Raises ValueError unless `x.ndim == rank` (`dims` names the axes)."""
  if jnp.ndim(x) != rank:
    raise ValueError(
      f'{name} must have shape {dims} (rank {rank}); got shape '
      f'{tuple(jnp.shape(x))}.'
    )


def check_same_shape(names: Sequence[str], arrays: Sequence[jax.Array]):
  """Raises ValueError unless all arrays share one shape."""
  shapes = [tuple(jnp.shape(a)) for a in arrays]
  if any(s != shapes[0] for s in shapes):
    listing = ', '.join(f'{n}={s}' for n, s in zip(names, shapes, strict=True))
    raise ValueError(f'Shape mismatch: expected equal shapes, got {listing}.')


def is_concrete(x) -> bool:
  """True when `x` holds values (not a tracer inside jit/vmap/grad)."""
  return not isinstance(x, jax.core.Tracer)


def check_finite(name: str, x: jax.Array, mask: jax.Array | None = None):
  """Raises ValueError if a (masked-in) entry of a concrete `x` is not finite.

  Args:
    name: argument name used in the message.
    x: array to check. Tracers are skipped.
    mask: optional array broadcastable to `x`; only entries where it is
      nonzero are checked (padding may legitimately hold -inf or NaN).
  """
  if not (is_concrete(x) and (mask is None or is_concrete(mask))):
    return
  values = np.asarray(x)
  bad = ~np.isfinite(values)
  if mask is not None:
    bad &= np.broadcast_to(np.asarray(mask) != 0, values.shape)
  if bad.any():
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(
      f'{name} has {int(bad.sum())} non-finite value(s) at valid positions; '
      f'first at index {index}: {values[index]}.'
    )


def check_choice(name: str, value, allowed: Sequence) -> None:
  """Raises ValueError unless `value` is one of `allowed`."""
  if value not in allowed:
    raise ValueError(
      f'Unknown {name} {value!r}; allowed values: '
      f'{", ".join(repr(a) for a in allowed)}.'
    )
