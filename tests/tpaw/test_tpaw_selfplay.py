"""The self-play driver: team growth, kill-and-resume, non-finite stop."""

import numpy as np
import optax
import pytest
from flax import nnx

import tpaw
from common import models
from common import train
from tests import resume_checks
from tpaw import team as team_lib


def _setup():
  rng = np.random.default_rng(0)
  n, p, r = 16, 4, 5
  recs = [
    tpaw.SFTRecord(
      ' '.join(str(x) for x in rng.integers(3, 20, rng.integers(1, p + 1))),
      ' '.join(str(x) for x in rng.integers(3, 20, rng.integers(1, r))),
      f'r{i}',
    )
    for i in range(n)
  ]
  data = tpaw.encode_pairs(
    lambda t: [int(w) for w in t.split()], recs, p, r, eos_id=2, pad_id=0
  )
  cfg = models.get_preset(
    'tiny', vocab_size=24, d_model=16, n_layers=1, d_ff=32, n_heads=2,
    n_kv_heads=1, max_seq_len=16,
  )  # fmt: skip
  graphdef, params = models.split(models.Transformer(cfg, rngs=nnx.Rngs(0)))
  config = tpaw.SelfPlayConfig(
    iterations=2, steps_per_iteration=4, batch_size=8, n_max=2,
    opponent_window=2, checkpoint_every=2, log_every=2,
    logprob_batch_size=16, seed=0,
  )  # fmt: skip
  return graphdef, params, data, config


def _run(workdir, **kw):
  graphdef, params, data, config = _setup()
  return tpaw.run_selfplay(
    graphdef, params, data, optax.adam(1e-2), config, workdir, eos_id=2,
    **kw,
  )  # fmt: skip


@pytest.mark.slow  # ~30-80 s on 2 cores: make test-all runs it
def test_kill_mid_iteration_and_resume_gives_the_same_parameters(
  tmp_path, monkeypatch
):
  whole = _run(tmp_path / 'whole')
  its = whole.iterations
  assert [it['iteration'] for it in its] == [1, 2]
  assert [it['team_size'] for it in its] == [1.0, 2.0]  # grows to n_max
  assert [it['opponent_triplets'] for it in its] == [16.0, 32.0]

  real = train.fit_on_policy

  def killed_at_step_6(state, step_fn, rollout_fn, **kw):
    def rollout(state, step):
      if step == 6:  # mid iteration 2, after the checkpoint at step 6
        raise RuntimeError('killed')
      return rollout_fn(state, step)

    return real(state, step_fn, rollout, **kw)

  monkeypatch.setattr(train, 'fit_on_policy', killed_at_step_6)
  with pytest.raises(RuntimeError, match='killed'):
    _run(tmp_path / 'resumed')
  monkeypatch.setattr(train, 'fit_on_policy', real)
  stored = tpaw.TeamStore(tmp_path / 'resumed' / 'team', 3)
  assert stored.iterations() == [0, 1]  # theta_0, theta_1 and their samples
  stored.close()
  resumed = _run(tmp_path / 'resumed')
  _, init, _, _ = _setup()
  resume_checks.assert_resumed_run_identical(
    resumed.state.params, whole.state.params, init
  )
  assert [h['step'] for h in resumed.history] == [
    h['step'] for h in whole.history
  ]


def test_non_finite_loss_names_step_and_iteration(tmp_path, monkeypatch):
  real = team_lib.team_logprobs

  def poisoned(*args, **kw):
    out = real(*args, **kw)
    out['team_target_logps'][:] = np.nan
    return out

  monkeypatch.setattr(team_lib, 'team_logprobs', poisoned)
  with pytest.raises(tpaw.NonFiniteIterationError) as info:
    _run(tmp_path / 'nan')
  assert info.value.iteration == 1
  assert 'self-play iteration 1, step 1 of 4' in str(info.value)
  assert "'loss'" in str(info.value)
  # theta_0 and D_0 stay in the store.
  store = tpaw.TeamStore(tmp_path / 'nan' / 'team', 3)
  assert store.iterations() == [0]
  store.close()


@pytest.mark.parametrize(
  'kw, match',
  [
    ({'eta': 0.0}, 'eta must be a finite number > 0'),
    ({'gamma': -1.0}, 'gamma must be a finite number >= 0'),
    ({'n_max': 0}, 'n_max must be an integer >= 1'),
    ({'log_every': 3}, 'must divide steps_per_iteration'),
    ({'temperature': -1.0}, 'temperature must be >= 0'),
  ],
)
def test_bad_selfplay_config(kw, match):
  with pytest.raises(ValueError, match=match):
    tpaw.SelfPlayConfig(**{'steps_per_iteration': 4, 'log_every': 2, **kw})
