"""``dhp.kernels``: the compiled greedy passes equal their uncompiled source
(``py_func``) on random rounds, and the LPT passes by hand. BFD and the
threshold pass are checked by hand in ``test_dhp_planner`` and
``test_dhp_threshold_pack``."""

import numpy as np
import pytest

from dhp import cost_model as cm
from dhp import kernels
from dhp import lengths as ln
from dhp import plan_types as pt


def _round(seed, n=16, b=24):
  lengths = ln.sample(('long_tail', 'bimodal', 'uniform')[seed % 3], b, seed)
  capacity = int(max(lengths.max() // 3, lengths.sum() // (0.8 * n)))
  lengths = pt.check_inputs(lengths, n, capacity)
  return pt.RoundProblem.build(lengths, n, capacity, cm.flexsp_preset())


def _equal(fn, *args):
  want = fn.py_func(*args)
  got = fn(*args)
  assert len(got) == len(want)
  for g, w in zip(got, want, strict=True):
    np.testing.assert_array_equal(g, w)
  return got


@pytest.mark.parametrize('seed', range(6))
def test_compiled_passes_equal_their_source(seed):
  problem = _round(seed)
  lengths, m = problem.lengths, problem.min_deg
  order = np.argsort(-lengths, kind='stable')
  _equal(kernels.bfd, lengths, m, order, int(problem.capacity))
  lb = problem.lower_bound()
  for scale in (1.0, 1.2, 2.0):
    _equal(
      kernels.threshold,
      problem.per,
      lengths,
      m,
      order,
      problem.usable(),
      lb * scale,
      float(problem.cost.beta),
      int(problem.capacity),
      problem.num_devices,
    )
  degrees = np.array([4, 4, 2, 2, 1, 1, 1, 1], np.int64)
  per = problem.per[:, degrees]
  _equal(
    kernels.lpt,
    per,
    order,
    degrees,
    m,
    lengths,
    float(problem.cost.beta),
    float(problem.capacity),
  )
  work = lengths.astype(np.float64) ** 2
  np.testing.assert_array_equal(
    kernels.lpt_rounds(work, order, 5),
    kernels.lpt_rounds.py_func(work, order, 5),
  )


def test_lpt_by_hand():
  # Two groups on 2 and 1 ranks, both starting at beta = 1. Times at the
  # groups' degrees: seq0 (4, 8), seq1 (3, 6), seq2 (2, 4). seq0 -> group 0
  # (1 + 4 < 1 + 8); seq1 -> group 1 (1 + 6 = 7 < 5 + 3 = 8); seq2 ->
  # group 0 (5 + 2 = 7 < 7 + 4). Memory is loose (5 tokens each).
  per = np.array([[4.0, 8.0], [3.0, 6.0], [2.0, 4.0]])
  degrees = np.array([2, 1], np.int64)
  ok, bins = kernels.lpt(
    per,
    np.arange(3),
    degrees,
    np.ones(3, np.int64),
    np.array([5, 5, 5], np.int64),
    1.0,
    10.0,
  )
  assert ok
  np.testing.assert_array_equal(bins, [0, 1, 0])


def test_lpt_respects_memory_and_min_degree():
  # seq0 needs 2 ranks: only group 0 can take it; seq1 (8 tokens) no longer
  # fits group 0's remaining 20 - 15 = 5 tokens and goes to group 1;
  # seq2 needs 2 ranks but group 0 is out of room: no group.
  per = np.ones((3, 2))
  degrees = np.array([2, 1], np.int64)
  ok, _ = kernels.lpt(
    per,
    np.arange(3),
    degrees,
    np.array([2, 1, 2], np.int64),
    np.array([15, 8, 12], np.int64),
    0.0,
    10.0,
  )
  assert not ok


def test_lpt_rounds_by_hand():
  # Work 9, 5, 4, 3 into 2 rounds: 9 -> r0; 5 -> r1; 4 -> r1 (5 < 9);
  # 3 -> r0 (9 = 9, tie to the lower round).
  work = np.array([9.0, 5.0, 4.0, 3.0])
  np.testing.assert_array_equal(
    kernels.lpt_rounds(work, np.arange(4), 2), [0, 1, 1, 0]
  )
