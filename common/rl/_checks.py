"""Input checks shared by the RL maths (static shapes, eager finiteness).

Shape contracts are `chex.assert_rank` / `chex.assert_equal_shape` at the
boundary of the public functions. Shapes are static under `jax.jit`, so they
are checked at trace time: free in the compiled program and always raised.
The error is a `ShapeError`, which is both chex's `AssertionError` and a
`ValueError` (the library's bad-input error), and its message names the
argument: `[Chex] Assertion assert_rank failed: ... [rewards must have
shape [B] (rank 1); got shape (2, 4).]`. Like every chex assertion they are
skipped under `chex.disable_asserts()`.

Values are only known outside a trace: `check_finite` raises on concrete
arrays and is a no-op on tracers (inside `jit` a non-finite input propagates
to the output instead; wrap the step in `jax.experimental.checkify` or check
the metrics to catch it there).
"""

from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np


class ShapeError(ValueError, AssertionError):
  """An array argument breaks a shape contract (raised by chex asserts)."""


def _as_array(x):
  # chex reads a list as a sequence of inputs; a bare list is one argument.
  return x if hasattr(x, 'shape') else np.asarray(x)


def check_rank(name: str, x: jax.Array, rank: int, dims: str) -> None:
  """`chex.assert_rank(x, rank)`, raising `ShapeError` naming `name`.

  Args:
    name: the argument's name, for the message.
    x: the array (a tracer is fine: only its static shape is read).
    rank: required number of axes.
    dims: the axes' names for the message, e.g. `'[B, T]'`.
  """
  x = _as_array(x)
  chex.assert_rank(
    x,
    rank,
    custom_message=(
      f'{name} must have shape {dims} (rank {rank}); got shape '
      f'{tuple(jnp.shape(x))}.'
    ),
    exception_type=ShapeError,
  )


def check_same_shape(names: Sequence[str], arrays: Sequence[jax.Array]):
  """`chex.assert_equal_shape(arrays)`, raising `ShapeError` naming them."""
  arrays = [_as_array(a) for a in arrays]
  if len(arrays) < 2:
    return
  chex.assert_equal_shape(
    arrays,
    custom_message=(
      f'Shape mismatch: expected equal shapes, got {_listing(names, arrays)}.'
    ),
    exception_type=ShapeError,
  )


def check_same_prefix(
  names: Sequence[str], arrays: Sequence[jax.Array], prefix_len: int, what: str
):
  """`chex.assert_equal_shape_prefix`: the first `prefix_len` axes agree.

  Args:
    names: the arguments' names, for the message.
    arrays: the arrays.
    prefix_len: number of leading axes that must be equal.
    what: the start of the message, e.g. `'a [B] and b [B, T] disagree on B'`.
  """
  arrays = [_as_array(a) for a in arrays]
  chex.assert_equal_shape_prefix(
    arrays,
    prefix_len,
    custom_message=f'{what}: {_listing(names, arrays)}.',
    exception_type=ShapeError,
  )


def _listing(names, arrays) -> str:
  shapes = [tuple(jnp.shape(a)) for a in arrays]
  return ', '.join(f'{n}={s}' for n, s in zip(names, shapes, strict=True))


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
