"""The check every resume test makes: identical to the uninterrupted run."""

import jax
import numpy as np


def assert_resumed_run_identical(resumed, uninterrupted, initial) -> None:
  """Asserts `resumed == uninterrupted` exactly, and that training moved.

  A resumed run is the same program on the same machine as the
  uninterrupted one, so the comparison is exact. That some leaf differs
  from `initial` guards against a run whose updates were all zero, where
  any resume would pass.

  Args:
    resumed: parameters of the run that was killed and resumed.
    uninterrupted: parameters of the run done in one go.
    initial: the parameters both started from.
  """
  moved = False
  for a, b, p in zip(
    jax.tree.leaves(resumed),
    jax.tree.leaves(uninterrupted),
    jax.tree.leaves(initial),
    strict=True,
  ):
    np.testing.assert_array_equal(a, b)
    moved |= bool(np.any(np.asarray(a) != np.asarray(p)))
  assert moved, 'the run did not change any parameter'
