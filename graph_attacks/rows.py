"""Node features stored as rows of a table: `x[i] = table[index[i]]`.

The disjoint union of the attack nodes' k-hop subgraphs repeats each
original node once per subgraph that holds it (Cora's 1000 test nodes:
36,650 union rows of 2708 distinct ones, 210 MB of 1433-wide floats).
Writing a fresh copy of that matrix to append the triggers cost most of an
ASR evaluation. As `Rows(table, index)` the union keeps the distinct rows
once; appending triggers appends to the table (`append`), and a row-wise
map, e.g. a model's first linear layer, runs on the table and is gathered
afterwards (`rowwise`, `dense`), so the N x F matrix is never formed.

Every function here also takes a plain array (and then is the ordinary
operation), so models and defences call them unconditionally.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


@jax.tree_util.register_pytree_node_class
class Rows:
  """Rows of `table` selected by `index`.

  Attributes:
    table: `[T, ...]` distinct rows.
    index: int `[N]` row of `table` for every node.
  """

  def __init__(self, table, index):
    self.table = table
    self.index = index

  @property
  def shape(self) -> tuple:
    return tuple(self.index.shape) + tuple(self.table.shape[1:])

  @property
  def dtype(self):
    return self.table.dtype

  @property
  def ndim(self) -> int:
    return len(self.shape)

  def __getitem__(self, idx):
    return self.table[self.index[idx]]

  def dense(self) -> jax.Array:
    """The selected rows as one array `[N, ...]`."""
    return self.table[self.index]

  def tree_flatten(self):
    return (self.table, self.index), None

  @classmethod
  def tree_unflatten(cls, aux, children):
    del aux
    return cls(*children)

  def __repr__(self) -> str:
    return f'Rows(table={self.table.shape}, index={self.index.shape})'


def dense(x) -> jax.Array:
  """`x` as an array: `Rows` gathered, anything else unchanged."""
  return x.dense() if isinstance(x, Rows) else x


def rowwise(f: Callable[[jax.Array], jax.Array], x):
  """`f` applied row by row: on the table (then re-indexed) for `Rows`.

  Only valid for maps whose output row i depends on input row i alone
  (linear layers, per-node prompts, per-node errors).
  """
  if isinstance(x, Rows):
    return Rows(f(x.table), x.index)
  return f(x)


def dense_rowwise(f: Callable[[jax.Array], jax.Array], x) -> jax.Array:
  """`dense(rowwise(f, x))`: `f(x)` as an array, computed on distinct rows."""
  return dense(rowwise(f, x))


def append(x, new: jax.Array):
  """`concatenate([x, new])` where `new` is `[K, ...]` fresh rows.

  For `Rows` the new rows go to the end of the table and K indices to
  the end of the index; nothing of size N x F is copied.
  """
  if isinstance(x, Rows):
    t = x.table.shape[0]
    k = new.shape[0]
    table = jnp.concatenate([x.table, new.astype(x.table.dtype)])
    extra = t + jnp.arange(k, dtype=x.index.dtype)
    return Rows(table, jnp.concatenate([x.index, extra]))
  return jnp.concatenate([x, new.astype(x.dtype)])
