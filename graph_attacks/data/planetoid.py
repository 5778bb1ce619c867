"""Planetoid loader (`ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}`).

The files are Python 2 pickles. They are read with a restricted unpickler
that resolves only the handful of NumPy/SciPy/builtin globals the format
uses, so a crafted file cannot run code. The assembly follows
`tkipf/gcn/gcn/utils.py`: test rows are reordered by their sorted index and
isolated test indices (CiteSeer) get zero rows.
"""

from __future__ import annotations

import codecs
import collections
import io
import os
import pickle

import numpy as np
import scipy.sparse as sp

from graph_attacks import graph as graph_lib

_SUFFIXES = ('x', 'y', 'tx', 'ty', 'allx', 'ally', 'graph')


def _numpy_reconstruct():
  try:
    from numpy._core import multiarray
  except ImportError:  # pragma: no cover - numpy < 2
    from numpy.core import multiarray
  return multiarray._reconstruct


# (module, name) pairs the Planetoid pickles reference, old and new paths.
_ALLOWED = {
  ('numpy', 'ndarray'): lambda: np.ndarray,
  ('numpy', 'dtype'): lambda: np.dtype,
  ('numpy.core.multiarray', '_reconstruct'): _numpy_reconstruct,
  ('numpy._core.multiarray', '_reconstruct'): _numpy_reconstruct,
  ('scipy.sparse.csr', 'csr_matrix'): lambda: sp.csr_matrix,
  ('scipy.sparse._csr', 'csr_matrix'): lambda: sp.csr_matrix,
  ('collections', 'defaultdict'): lambda: collections.defaultdict,
  ('__builtin__', 'list'): lambda: list,
  ('builtins', 'list'): lambda: list,
  # Python 3 writes bytes in protocol-2 pickles as _codecs.encode(str, enc);
  # it only encodes text.
  ('_codecs', 'encode'): lambda: codecs.encode,
}


class RestrictedUnpickler(pickle.Unpickler):
  """Unpickler that admits only the globals listed in `_ALLOWED`."""

  def find_class(self, module, name):
    factory = _ALLOWED.get((module, name))
    if factory is None:
      raise pickle.UnpicklingError(
        f'refusing to load global {module}.{name} from a Planetoid file; '
        f'allowed: {sorted(".".join(k) for k in _ALLOWED)}'
      )
    return factory()


def restricted_load(data: bytes):
  """Unpickles `data` (latin1 for Python 2 pickles) with the allow-list."""
  return RestrictedUnpickler(io.BytesIO(data), encoding='latin1').load()


class PlanetoidFormatError(ValueError):
  """A Planetoid file is truncated, corrupt or not what its name says."""


def _read(path: str):
  with open(path, 'rb') as f:
    data = f.read()
  try:
    return restricted_load(data)
  except pickle.UnpicklingError as e:
    raise PlanetoidFormatError(
      f'{path}: not a readable Planetoid pickle ({e}); re-download the file'
    ) from None
  except (EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
    raise PlanetoidFormatError(
      f'{path}: truncated or corrupt Planetoid pickle '
      f'({type(e).__name__}: {e}); re-download the file'
    ) from None


def _read_index(path: str) -> np.ndarray:
  rows = []
  with open(path, 'rb') as f:
    for number, raw in enumerate(f, start=1):
      line = raw.strip()
      if not line:
        continue
      try:
        rows.append(int(line))
      except ValueError:
        raise PlanetoidFormatError(
          f'{path}, line {number}: {line[:40]!r} is not a node index (one '
          'integer per line)'
        ) from None
  if not rows:
    raise PlanetoidFormatError(f'{path}: no test indices')
  return np.array(rows, np.int64)


def _dense(m) -> np.ndarray:
  return np.asarray(m.todense() if sp.issparse(m) else m, np.float32)


def load_planetoid(
  data_dir: str, name: str = 'cora', normalize: bool = True
) -> tuple[graph_lib.NodeDataset, graph_lib.Split]:
  """Loads a Planetoid dataset and its public split.

  Args:
    data_dir: directory holding the eight `ind.<name>.*` files.
    name: dataset name (lower case, e.g. 'cora', 'citeseer').
    normalize: row-normalise the features.

  Returns:
    The dataset (undirected, no self-loops) and the public split: train =
    the first `len(y)` nodes, val = the next 500, test = the test indices
    (halved into `clean_test` and `atk`), unlabeled = the rest.

  Raises:
    FileNotFoundError: if the directory or a file is missing (names it).
    PlanetoidFormatError: (a ValueError) a file is truncated or corrupt,
      or the index file has a non-integer line (names the file and line).
    ValueError: if array shapes disagree (names the arrays).
  """
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(f'Planetoid directory {data_dir!r} does not exist')
  missing = [
    f'ind.{name}.{s}'
    for s in (*_SUFFIXES, 'test.index')
    if not os.path.isfile(os.path.join(data_dir, f'ind.{name}.{s}'))
  ]
  if missing:
    raise FileNotFoundError(
      f'Planetoid directory {data_dir!r} lacks files: {", ".join(missing)}'
    )
  obj = {s: _read(os.path.join(data_dir, f'ind.{name}.{s}')) for s in _SUFFIXES}
  test_index = _read_index(os.path.join(data_dir, f'ind.{name}.test.index'))
  x, y = _dense(obj['x']), np.asarray(obj['y'])
  tx, ty = _dense(obj['tx']), np.asarray(obj['ty'])
  allx, ally = _dense(obj['allx']), np.asarray(obj['ally'])
  for a, b, an, bn in (
    (x, y, 'x', 'y'),
    (tx, ty, 'tx', 'ty'),
    (allx, ally, 'allx', 'ally'),
  ):
    if a.shape[0] != b.shape[0]:
      raise ValueError(
        f'ind.{name}.{an} has {a.shape[0]} rows but ind.{name}.{bn} has '
        f'{b.shape[0]} (feature and label counts must match)'
      )
  if tx.shape[0] != test_index.size:
    raise ValueError(
      f'ind.{name}.tx has {tx.shape[0]} rows but test.index lists '
      f'{test_index.size} indices'
    )
  test_sorted = np.sort(test_index)
  lo, hi = int(test_sorted[0]), int(test_sorted[-1])
  if lo < allx.shape[0]:
    raise ValueError(
      f'test indices start at {lo}, inside allx (first {allx.shape[0]} rows)'
    )
  # Isolated test nodes (CiteSeer) get zero rows, as in tkipf/gcn.
  span = hi - lo + 1
  tx_ext = np.zeros((span, tx.shape[1]), np.float32)
  ty_ext = np.zeros((span, ty.shape[1]), ty.dtype)
  tx_ext[test_sorted - lo] = tx
  ty_ext[test_sorted - lo] = ty
  features = np.concatenate([allx, tx_ext])
  onehot = np.concatenate([ally, ty_ext])
  # Reorder: row test_index[i] holds the i-th tx row.
  features[test_index] = features[test_sorted]
  onehot[test_index] = onehot[test_sorted]
  n = features.shape[0]
  labels = onehot.argmax(1).astype(np.int32)

  adj = obj['graph']
  if not isinstance(adj, dict):
    raise ValueError(f'ind.{name}.graph is {type(adj).__name__}, not a dict')
  s = [int(u) for u, vs in adj.items() for _ in vs]
  r = [int(v) for vs in adj.values() for v in vs]
  s, r = np.asarray(s, np.int64), np.asarray(r, np.int64)
  if s.size and max(s.max(), r.max()) >= n:
    raise ValueError(
      f'ind.{name}.graph references node {max(s.max(), r.max())} but there '
      f'are only {n} feature rows'
    )
  senders, receivers = graph_lib.undirected_edges(s, r, n)
  if normalize:
    features = graph_lib.row_normalize(features)
  dataset = graph_lib.NodeDataset(
    graph=graph_lib.make_graph(features, senders, receivers),
    labels=labels,
    num_classes=int(onehot.shape[1]),
    name=name,
  )
  train = np.arange(y.shape[0], dtype=np.int32)
  test = test_sorted.astype(np.int32)
  # Public split: the 500 nodes after the training ones (fewer on graphs
  # too small for 500), never a test node.
  val = np.arange(y.shape[0], min(y.shape[0] + 500, n), dtype=np.int32)
  val = np.setdiff1d(val, test).astype(np.int32)
  rest = np.setdiff1d(np.arange(n), np.concatenate([train, val, test]))
  half = test.size // 2
  split = graph_lib.Split(
    train=train,
    val=val,
    test=test,
    clean_test=test[:half],
    atk=test[half:],
    unlabeled=rest.astype(np.int32),
  )
  return dataset, split
