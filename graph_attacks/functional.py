"""NNX modules as pytree callables that jitted functions take as arguments.

`module_fn(module, *suffix)` splits a module once and returns a
`jax.tree_util.Partial` whose only leaves are the module's state: calling it
with `args` runs `nnx.merge(graphdef, state)(*args, *suffix)` (jitted, one
compilation per graphdef and shape). Because it is a pytree, it can be
passed *into* a jitted function (`evaluate.triggered_predictions` takes the
victim, the trigger source and the defence this way), so a trained model's
weights are traced arguments, never constants folded into the program (a
compile-time constant trigger repository of K x n x F floats cost seconds
of XLA constant folding at CiteSeer's 3703 features).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
from flax import nnx


@functools.partial(jax.jit, static_argnames=('graphdef', 'suffix'))
def _apply(graphdef, state, args, suffix):
  return nnx.merge(graphdef, state)(*args, *suffix)


@dataclasses.dataclass(frozen=True)
class _Merged:
  """The static half of `module_fn`: the graphdef and trailing arguments."""

  graphdef: Any
  suffix: tuple = ()

  def __call__(self, state, *args):
    return _apply(self.graphdef, state, args, self.suffix)


def module_fn(module: nnx.Module, *suffix) -> jax.tree_util.Partial:
  """`module` as a pytree callable: `fn(*args) == module(*args, *suffix)`.

  Args:
    module: any NNX module.
    *suffix: static (hashable) trailing arguments, e.g. the query mode
      `'eval'` of a trigger source.

  Returns:
    A `jax.tree_util.Partial` (leaves: the module's state) that may be
    called directly or passed as an argument of a jitted function.
  """
  graphdef, state = nnx.split(module)
  return jax.tree_util.Partial(_Merged(graphdef, tuple(suffix)), state)
