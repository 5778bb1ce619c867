"""Tests for dhp.lengths: seeded, bounded length generators."""

import numpy as np
import pytest

from dhp import lengths as ln


@pytest.mark.parametrize('name', sorted(ln.GENERATORS))
def test_seeded_and_bounded(name):
  a = ln.sample(name, 500, 7)
  b = ln.sample(name, 500, 7)
  c = ln.sample(name, 500, 8)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert a.dtype == np.int64 and a.shape == (500,)
  assert a.min() >= 64 and a.max() <= 131072


def test_shapes_of_distributions():
  tail = ln.long_tail(4000, 0)
  assert np.percentile(tail, 99) > 8 * np.median(tail)  # long tail
  uni = ln.uniform(4000, 0, mean=8192, spread=0.1)
  assert uni.min() >= 0.9 * 8192 - 1 and uni.max() <= 1.1 * 8192 + 1
  bi = ln.bimodal(4000, 0, p_long=0.1)
  assert 0.07 < (bi > 20000).mean() < 0.13
  mm = ln.multimodal(4000, 0, p_text=0.3, p_image=0.45)
  assert (mm >= 8 * 256).mean() > 0.2  # video samples


@pytest.mark.parametrize(
  'kwargs,match',
  [
    (dict(batch_size=0), 'batch_size'),
    (dict(batch_size=4, min_len=10, max_len=5), 'min_len'),
  ],
)
def test_bad_input(kwargs, match):
  with pytest.raises(ValueError, match=match):
    ln.long_tail(seed=0, **kwargs)


def test_unknown_name_and_bad_probabilities():
  with pytest.raises(ValueError, match='unknown length distribution'):
    ln.sample('zipf', 4, 0)
  with pytest.raises(ValueError, match='p_text'):
    ln.multimodal(4, 0, p_text=0.8, p_image=0.5)
  with pytest.raises(ValueError, match='spread'):
    ln.uniform(4, 0, spread=1.5)
  with pytest.raises(ValueError, match='p_long'):
    ln.bimodal(4, 0, p_long=2.0)
