"""Float comparison tolerances derived from the magnitudes compared.

Float32 results differ across CPUs (FMA contraction, SIMD width) and thread
counts (reduction order), so no test compares computed floats with a bare
absolute tolerance. The rule used throughout the tests:

* `rtol` by how much float32 arithmetic lies between the two sides
  (float32 epsilon is 1.2e-7):

  - `ROUNDING` (1e-6, ~8 ulp): a handful of elementwise ops or a short sum
    of exactly representable numbers (hand-computed cases);
  - `FEW_OPS` (1e-5): a few ops including exp/log/sqrt, short scans and
    reductions;
  - `REDUCTION` (1e-4): long reductions and matmul chains: two float32
    programs through a (small) model that order their sums differently
    (KV cache vs full recompute, float32 vs a float64 reference), and
    their gradients;
  - `DEEP` (1e-3): chains of those (many training steps);
  - `BF16` (4 bfloat16 epsilons, 1.6e-2): a bfloat16 forward against a
    float32 one.

* `atol = rtol * scale`, where `scale` is the typical magnitude of the
  terms that produced the compared values: by default
  `max(1, max |want|)`, so that entries near zero (results of cancellation
  between terms of that size) get the error those terms carry. Pass
  `scale=` when the inputs are larger than the outputs (log-probs computed
  from large logits: the error is relative to the logits), and
  `scale=0.0` for values spanning decades with no cancellation (purely
  relative error).

* Central finite differences `(L(x + h) - L(x - h)) / 2h` carry the
  rounding of the two losses, `fd_atol(L, h)`, on top of an `rtol` for
  the truncation error.

Comparisons that are exact by construction (integers, dyadic hand values
computed exactly in float32, the same program run twice on the same
machine, masked positions set to constants) use `assert_array_equal`
with a comment saying why, not a tolerance.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import pytest

ROUNDING = 1e-6
FEW_OPS = 1e-5
REDUCTION = 1e-4
DEEP = 1e-3
BF16 = 4 * 2.0**-8


def magnitude(*values: Any) -> float:
  """`max(1, max |v|)` over the finite entries of `values`."""
  m = 1.0
  for v in values:
    a = np.abs(np.asarray(v, np.float64))
    a = a[np.isfinite(a)]
    if a.size:
      m = max(m, float(a.max()))
  return m


def atol_for(want: Any, rtol: float, scale: float | None = None) -> float:
  """The absolute tolerance `rtol * scale` (`scale` from `want` by default)."""
  return rtol * (magnitude(want) if scale is None else scale)


def assert_close(
  got: Any,
  want: Any,
  rtol: float = ROUNDING,
  *,
  scale: float | None = None,
  err_msg: str = '',
) -> None:
  """`assert_allclose(got, want, rtol, atol=rtol * scale)`; see module doc."""
  want = np.asarray(want, np.float64)
  np.testing.assert_allclose(
    np.asarray(got, np.float64),
    want,
    rtol=rtol,
    atol=atol_for(want, rtol, scale),
    err_msg=err_msg,
  )


def assert_trees_close(
  got: Any, want: Any, rtol: float, *, scale: float | None = None
) -> None:
  """`assert_close` leaf by leaf (each leaf scaled by its own magnitude)."""
  assert jax.tree.structure(got) == jax.tree.structure(want)
  leaves = zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
  for i, (g, w) in enumerate(leaves):
    assert_close(g, w, rtol, scale=scale, err_msg=f'leaf {i}')


def fd_atol(loss: float, h: float, rtol: float = ROUNDING) -> float:
  """Rounding error of a central difference of float32 losses `~loss`.

  Each loss evaluation is off by about `rtol * |loss|`; the difference of
  two is divided by `2 h`.
  """
  return 2 * rtol * magnitude(loss) / (2 * h)


def approx(want: float, rtol: float = ROUNDING, *, scale: float | None = None):
  """`pytest.approx` with the same rule (for scalar `==` comparisons)."""
  return pytest.approx(want, rel=rtol, abs=atol_for(want, rtol, scale))
