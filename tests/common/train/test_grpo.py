"""Tests for the GRPO trainer (common/train/grpo.py) on fit_on_policy."""

import dataclasses

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from common.models import Transformer
from common.models import get_preset
from common.sampling import sampler as sampler_lib
from common.tokenizers import WordTokenizer
from common.train import grpo

WORDS = 'yes no maybe red blue green say one word'


@pytest.fixture(scope='module')
def tok():
  return WordTokenizer.build([WORDS])


def _model(tok, seed=0):
  cfg = get_preset(
    'tiny', vocab_size=tok.vocab_size, d_model=32, d_ff=64, n_layers=1
  )
  return Transformer(cfg, rngs=nnx.Rngs(seed))


def reward_yes(prompts, completions, target):
  del prompts
  return [
    float(t in c.split()) for c, t in zip(completions, target, strict=True)
  ]


def _source(step):
  del step
  return ['say one word'] * 2, {'target': ['yes', 'yes']}


def _config(**kw):
  base = dict(
    num_steps=4,
    prompts_per_step=2,
    num_generations=4,
    max_prompt_len=4,
    max_new_tokens=3,
    checkpoint_every=1,
    log_every=1,
  )
  base.update(kw)
  return grpo.GRPOConfig(**base)


def test_rollout_batch_alignment():
  out = sampler_lib.GenerationOutput(
    tokens=np.array([[7, 8, 0]]),
    logprobs=np.array([[-0.5, -0.25, 0.0]], np.float32),
    mask=np.array([[True, True, False]]),
    lengths=np.array([2]),
    finish_reason=np.array([sampler_lib.FINISH_EOS]),
  )
  b = grpo.rollout_batch(np.array([[0, 5]]), np.array([[False, True]]), out)
  np.testing.assert_array_equal(b['tokens'], [[0, 5, 7, 8, 0]])
  np.testing.assert_array_equal(b['attention_mask'], [[0, 1, 1, 1, 0]])
  np.testing.assert_array_equal(b['loss_mask'], [[0, 0, 1, 1, 0]])
  np.testing.assert_allclose(b['old_logprobs'], [[0, 0, -0.5, -0.25, 0]])


def test_config_validation():
  with pytest.raises(ValueError, match='num_generations'):
    _config(num_generations=1)
  with pytest.raises(ValueError, match='scale_rewards'):
    _config(scale_rewards='tokens')


@pytest.fixture(scope='module')
def trainer(tok):
  """One trainer (one compile) shared by the tests below."""
  return grpo.GRPOTrainer(
    _model(tok), tok, optax.adam(1e-2), reward_yes, _config()
  )


def test_bad_reward_shape_is_reported(trainer, tmp_path, monkeypatch):
  monkeypatch.setattr(trainer, 'reward_fn', lambda p, c, target: [1.0])
  with pytest.raises(ValueError, match='one reward per completion'):
    trainer.train(_source, tmp_path)


def test_resume_after_crash_matches_uninterrupted_run(trainer, tmp_path):
  full, hist = trainer.train(_source, tmp_path / 'a')
  assert [h['step'] for h in hist] == [1, 2, 3, 4]

  def crashing(step):
    if step == 2:
      raise RuntimeError('simulated preemption')
    return _source(step)

  with pytest.raises(RuntimeError, match='preemption'):
    trainer.train(crashing, tmp_path / 'b')
  resumed, hist_b = trainer.train(_source, tmp_path / 'b')
  assert int(resumed.step) == 4
  # The history spans the whole run, the records from before the crash too.
  assert [h['step'] for h in hist_b] == [1, 2, 3, 4]
  for a, b in zip(hist, hist_b, strict=True):
    assert a['reward_mean'] == b['reward_mean']
  # Same machine, same program: the resumed run is bit-identical.
  jax.tree.map(np.testing.assert_array_equal, full.params, resumed.params)
  jax.tree.map(np.testing.assert_array_equal, full.opt_state, resumed.opt_state)


def test_eval_runs_at_start_and_end_and_is_not_repeated(trainer, tmp_path):
  calls = []

  def eval_fn(params):
    calls.append(1)
    return {'n': float(len(calls))}

  _, hist = trainer.train(_source, tmp_path, eval_fn)
  evals = [h['step'] for h in hist if 'eval_n' in h]
  assert evals == [0, 4]
  _, again = trainer.train(_source, tmp_path, eval_fn)  # already finished
  assert again == hist


def test_rollout_metrics_reach_the_history(trainer, tmp_path):
  _, hist = trainer.train(_source, tmp_path)
  for h in hist:
    assert {'reward_mean', 'reward_std', 'completion_length', 'loss'} <= set(h)
    assert 0.0 <= h['reward_mean'] <= 1.0


@pytest.mark.slow
def test_grpo_raises_reward(tok, tmp_path):
  cfg = dataclasses.replace(
    _config(num_steps=40, checkpoint_every=None, log_every=5),
    prompts_per_step=4,
    num_generations=8,
  )
  trainer = grpo.GRPOTrainer(
    _model(tok), tok, optax.adam(3e-2), reward_yes, cfg
  )
  source = lambda s: (['say one word'] * 4, {'target': ['yes'] * 4})
  _, hist = trainer.train(source, tmp_path)
  first, last = hist[0]['reward_mean'], hist[-1]['reward_mean']
  assert last > first + 0.3, (first, last)
