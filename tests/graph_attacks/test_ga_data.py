"""Tests for the Planetoid loader, the split and the CSBM generator."""

import os
import pickle
import warnings
from collections import defaultdict

import numpy as np
import pytest
import scipy.sparse as sp

from graph_attacks import graph as graph_lib
from graph_attacks.data import csbm
from graph_attacks.data import planetoid
from graph_attacks.data import splits

CORA_DIR = os.environ.get(
  'PLANETOID_DIR',
  os.path.join(
    os.path.dirname(__file__), '..', '..', '..', 'shared', 'data', 'planetoid'
  ),
)


def _write_planetoid(
  tmp, name='toy', n_all=6, n_test=3, feat=4, classes=2, drop=()
):
  """Writes a small Planetoid dataset; returns its ground truth."""
  rng = np.random.RandomState(0)
  n = n_all + n_test
  x_full = (rng.rand(n, feat) > 0.5).astype(np.float32)
  x_full[:, 0] = 1.0
  y_full = rng.randint(classes, size=n)
  onehot = np.eye(classes)[y_full]
  test_index = np.arange(n_all, n)[::-1]  # unsorted, like Cora
  objs = {
    'x': sp.csr_matrix(x_full[:2]),
    'y': onehot[:2],
    'allx': sp.csr_matrix(x_full[:n_all]),
    'ally': onehot[:n_all],
    # tx rows are in test.index order
    'tx': sp.csr_matrix(x_full[test_index]),
    'ty': onehot[test_index],
  }
  g = defaultdict(list)
  for u in range(n - 1):
    g[u].append(u + 1)
  objs['graph'] = g
  for k, v in objs.items():
    if k in drop:
      continue
    with open(tmp / f'ind.{name}.{k}', 'wb') as f:
      pickle.dump(v, f, protocol=2)
  with open(tmp / f'ind.{name}.test.index', 'w') as f:
    f.write('\n'.join(map(str, test_index)))
  return x_full, y_full


def test_planetoid_reorders_test_rows(tmp_path):
  x, y = _write_planetoid(tmp_path)
  ds, split = planetoid.load_planetoid(str(tmp_path), 'toy', normalize=False)
  np.testing.assert_array_equal(ds.graph.nodes, x)
  np.testing.assert_array_equal(ds.labels, y)
  # Chain 0-1-...-8, both directions.
  assert ds.graph.senders.size == 16
  np.testing.assert_array_equal(split.train, [0, 1])
  np.testing.assert_array_equal(split.test, [6, 7, 8])


def test_planetoid_row_normalises(tmp_path):
  _write_planetoid(tmp_path)
  ds, _ = planetoid.load_planetoid(str(tmp_path), 'toy')
  np.testing.assert_allclose(ds.graph.nodes.sum(1), 1.0, rtol=1e-6)


def test_planetoid_missing_file_named(tmp_path):
  _write_planetoid(tmp_path, drop=('ty',))
  with pytest.raises(FileNotFoundError, match=r'ind\.toy\.ty'):
    planetoid.load_planetoid(str(tmp_path), 'toy')
  with pytest.raises(FileNotFoundError, match='does not exist'):
    planetoid.load_planetoid(str(tmp_path / 'nope'), 'toy')


@pytest.mark.parametrize(
  'content, match',
  [
    (None, 'truncated'),  # the real file cut in half
    (b'garbage!', 'not a readable Planetoid pickle'),
    (b'', 'truncated or corrupt'),
  ],
)
def test_planetoid_corrupt_pickle_names_the_file(tmp_path, content, match):
  _write_planetoid(tmp_path)
  path = tmp_path / 'ind.toy.allx'
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2] if content is None else content)
  with pytest.raises(planetoid.PlanetoidFormatError) as info:
    planetoid.load_planetoid(str(tmp_path), 'toy')
  assert str(info.value).startswith(str(path))
  assert match in str(info.value)


def test_planetoid_bad_index_line_names_file_and_line(tmp_path):
  _write_planetoid(tmp_path)
  path = tmp_path / 'ind.toy.test.index'
  lines = path.read_text().splitlines()
  path.write_text('\n'.join([lines[0], 'x7', *lines[1:]]) + '\n')
  with pytest.raises(planetoid.PlanetoidFormatError) as info:
    planetoid.load_planetoid(str(tmp_path), 'toy')
  assert str(info.value).startswith(f"{path}, line 2: b'x7'")


def test_planetoid_mismatched_counts(tmp_path):
  _write_planetoid(tmp_path)
  with open(tmp_path / 'ind.toy.ally', 'wb') as f:
    pickle.dump(np.eye(2)[np.zeros(5, int)], f, protocol=2)
  with pytest.raises(ValueError, match='allx has 6 rows but ind.toy.ally'):
    planetoid.load_planetoid(str(tmp_path), 'toy')


class _Evil:
  def __reduce__(self):
    return (os.system, ('echo pwned',))


def test_restricted_unpickler_refuses_code(tmp_path):
  data = pickle.dumps(_Evil(), protocol=2)
  with pytest.raises(pickle.UnpicklingError, match='refusing to load global'):
    planetoid.restricted_load(data)
  _write_planetoid(tmp_path)
  with open(tmp_path / 'ind.toy.graph', 'wb') as f:
    f.write(data)
  with pytest.raises(
    planetoid.PlanetoidFormatError, match='ind.toy.graph.*system'
  ):
    planetoid.load_planetoid(str(tmp_path), 'toy')


def test_restricted_unpickler_allows_format_types():
  m = sp.csr_matrix(np.eye(3, dtype=np.float32))
  out = planetoid.restricted_load(pickle.dumps(m, protocol=2))
  np.testing.assert_array_equal(out.toarray(), np.eye(3))


@pytest.mark.skipif(
  not os.path.isdir(CORA_DIR),
  reason=f'Cora Planetoid files not found at {CORA_DIR} (set PLANETOID_DIR)',
)
def test_real_cora_statistics():
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', DeprecationWarning)
    ds, split = planetoid.load_planetoid(CORA_DIR, 'cora')
  assert ds.graph.nodes.shape == (2708, 1433)
  assert ds.graph.senders.size == 10556
  assert ds.num_classes == 7
  assert (split.train.size, split.val.size, split.test.size) == (140, 500, 1000)
  np.testing.assert_array_equal(
    np.bincount(ds.labels), [351, 217, 418, 818, 426, 298, 180]
  )


def test_random_split_and_training_graph():
  split = splits.random_split(100, seed=3)
  assert (split.train.size, split.val.size, split.test.size) == (20, 10, 20)
  assert split.clean_test.size == split.atk.size == 10
  all_idx = np.concatenate(
    [split.train, split.val, split.test, split.unlabeled]
  )
  np.testing.assert_array_equal(np.sort(all_idx), np.arange(100))
  g = graph_lib.make_graph(np.zeros((100, 2)), np.arange(99), np.arange(1, 100))
  tg = splits.training_graph(g, split)
  test = set(split.test.tolist())
  assert not any(
    int(s) in test or int(r) in test
    for s, r in zip(tg.senders, tg.receivers, strict=True)
  )
  with pytest.raises(ValueError, match='train_frac'):
    splits.random_split(10, 0, train_frac=1.5)


def test_csbm_deterministic_and_cora_like():
  p = csbm.CSBMParams(num_nodes=600, num_features=300, topic_words=40)
  a, b = csbm.generate_csbm(p), csbm.generate_csbm(p)
  np.testing.assert_array_equal(a.graph.senders, b.graph.senders)
  np.testing.assert_array_equal(a.graph.nodes, b.graph.nodes)
  homophily = (a.labels[a.graph.senders] == a.labels[a.graph.receivers]).mean()
  assert 0.7 < homophily < 0.9
  assert 3.0 < a.graph.senders.size / 600 < 4.5
  assert not np.any(a.graph.senders == a.graph.receivers)
  c = csbm.generate_csbm(
    csbm.CSBMParams(num_nodes=600, num_features=300, topic_words=40, seed=1)
  )
  assert not np.array_equal(a.labels, c.labels)
  with pytest.raises(ValueError, match='homophily'):
    csbm.generate_csbm(csbm.CSBMParams(homophily=1.5))


def test_csbm_tfds_round_trip(tmp_path):
  ds = csbm.load_csbm(str(tmp_path), 'tiny')
  ref = csbm.generate_csbm(csbm.CSBM.BUILDER_CONFIGS[2].params)
  np.testing.assert_allclose(ds.graph.nodes, ref.graph.nodes)
  np.testing.assert_array_equal(ds.labels, ref.labels)
  np.testing.assert_array_equal(ds.graph.senders, ref.graph.senders)
  np.testing.assert_array_equal(ds.graph.receivers, ref.graph.receivers)
  with pytest.raises(ValueError, match='unknown CSBM config'):
    csbm.load_csbm(str(tmp_path), 'huge')


def test_planetoid_isolated_test_index_gets_zero_row(tmp_path):
  # CiteSeer-style: test.index skips an index inside its range.
  rng = np.random.RandomState(1)
  x = (rng.rand(8, 3) > 0.3).astype(np.float32)
  onehot = np.eye(2)[rng.randint(2, size=8)]
  test_index = np.array([7, 5])  # index 6 is isolated (absent)
  objs = {
    'x': sp.csr_matrix(x[:2]),
    'y': onehot[:2],
    'allx': sp.csr_matrix(x[:5]),
    'ally': onehot[:5],
    'tx': sp.csr_matrix(x[test_index]),
    'ty': onehot[test_index],
    'graph': defaultdict(list, {0: [1], 5: [7]}),
  }
  for k, v in objs.items():
    with open(tmp_path / f'ind.cs.{k}', 'wb') as f:
      pickle.dump(v, f, protocol=2)
  with open(tmp_path / 'ind.cs.test.index', 'w') as f:
    f.write('7\n5\n')
  ds, split = planetoid.load_planetoid(str(tmp_path), 'cs', normalize=False)
  assert ds.graph.nodes.shape == (8, 3)
  np.testing.assert_array_equal(ds.graph.nodes[[5, 7]], x[[5, 7]])
  np.testing.assert_array_equal(ds.graph.nodes[6], 0.0)
  np.testing.assert_array_equal(split.test, [5, 7])
  np.testing.assert_array_equal(split.val, [2, 3, 4, 6])
