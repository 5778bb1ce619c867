"""Tests for CP-GBA's periodic model selection (`selection.py`)."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from graph_attacks import graph as graph_lib
from graph_attacks import prompt
from graph_attacks import selection


class _Attack(nnx.Module):
  def __init__(self):
    self.w = nnx.Param(jnp.zeros(2))


def _selector(every=3, total=7, **kw):
  rng = np.random.RandomState(0)
  n = 30
  s, r = graph_lib.undirected_edges(
    rng.randint(n, size=60), rng.randint(n, size=60), n
  )
  g = graph_lib.make_graph(rng.rand(n, 4), s, r)
  gnn = prompt.PretrainedGCN(4, 8, 2, rngs=nnx.Rngs(0))
  return selection.ValidationSelector(
    g,
    rng.randint(3, size=n),
    (np.arange(n) < 10).astype(np.float32),
    np.array([20, 21]),
    np.array([10, 11, 12, 13]),
    0,
    gnn,
    3,
    every=every,
    total_epochs=total,
    epochs=kw.get('epochs', 5),
    learning_rate=0.01,
    seed=0,
  )


def test_keeps_the_best_checked_state_hand_case():
  # every=3 over 7 epochs: checks after epochs 2, 5 and the last (6).
  sel = _selector()
  assert [e for e in range(7) if sel.due(e)] == [2, 5, 6]
  # Scripted validation ASRs 0.25, 0.75, 0.75 (a tie keeps the earlier).
  scripted = iter([0.25, 0.75, 0.75])
  sel.validation_asr = lambda attack: next(scripted)
  attack = _Attack()
  for epoch in range(7):
    attack.w[...] = jnp.full(2, float(epoch))
    assert sel(epoch, attack, None) is False
  assert sel.history == [(2, 0.25), (5, 0.75), (6, 0.75)]
  assert (sel.best_epoch, sel.best_asr) == (5, 0.75)
  sel.restore(attack)
  np.testing.assert_array_equal(attack.w[...], [5.0, 5.0])


def test_validation_asr_is_a_rate_and_bad_interval_rejected():
  from graph_attacks import baselines

  sel = _selector()
  gen = baselines.Generator(4, 3, rngs=nnx.Rngs(1))
  asr = sel.validation_asr(gen)
  # 4 validation nodes: the ASR is a multiple of 1/4.
  assert 0.0 <= asr <= 1.0 and (4 * asr) == int(4 * asr)
  with pytest.raises(ValueError, match='select_every=0'):
    _selector(every=0)
