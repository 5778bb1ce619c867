"""The NSPO experiment: configs, optimizers, resume, and a tiny run."""

import jax
import numpy as np
import pytest
from flax import nnx

import nspo
from common import models
from common import optim
from common.report import schema
from common.synthetic import safety
from common.train import sft_world
from experiments.nspo.configs import default
from experiments.nspo.configs import paper
from experiments.nspo.configs import tiny
from nspo import experiment
from nspo import safety_rl
from tests import resume_checks


def _init(cfg, seed=0):
  """`(graphdef, params)` of a fresh Transformer."""
  return models.split(models.Transformer(cfg, rngs=nnx.Rngs(seed)))


def test_safety_reward_hand_case():
  refused = np.array([True, False, True, False])
  harmful = np.array([True, True, False, False])
  np.testing.assert_array_equal(
    safety_rl.safety_reward(refused, harmful), [0.0, -1.0, -1.0, 0.0]
  )


def test_paper_config_constructs_and_projection_changes_the_update():
  c = paper.get_config()
  assert c.rl.learning_rate == 1e-6 and c.rl.num_generations == 5
  assert c.rl.prompts_per_step == 320 and c.rl.reproject_every == 5
  assert c.nspo.rule == 'relative' and c.nspo.value == 5e-5
  assert tuple(c.nspo.sites) == ('mlp_in', 'mlp_hidden')
  real = sft_world.model_config(c, vocab_size=1000, max_len=64)
  assert (real.d_model, real.d_ff, real.n_layers) == (3584, 18944, 28)
  # The same config on a tiny shape: model, spaces and every arm's optimizer.
  c.model = c.model.__class__(
    {'preset': 'tiny', 'd_model': 16, 'n_layers': 2, 'd_ff': 32, 'hf_dir': ''}
  )
  _, params = _init(sft_world.model_config(c, vocab_size=50, max_len=16))
  rng = np.random.default_rng(0)
  # General inputs of rank 4 < d: every layer has a null space.
  inputs = {
    s: rng.standard_normal((2, 4, d))
    for s, d in [('mlp_in', 16), ('mlp_hidden', 32)]
  }
  moments = {s: np.einsum('lni,lnj->lij', x, x) for s, x in inputs.items()}
  spaces = nspo.from_moments(moments, nspo.Threshold(c.nspo.rule, c.nspo.value))
  grads = jax.tree.map(
    lambda x: jax.random.normal(jax.random.key(1), x.shape), params
  )
  ups = {}
  for arm in c.rl.arms:
    tx = safety_rl.make_optimizer(c, arm, spaces, params)
    u, _ = tx.update(grads, tx.init(params), params)
    assert jax.tree.structure(u) == jax.tree.structure(params)
    ups[arm] = u
  for layer in range(2):
    for name, site in [('gate_proj', 'mlp_in'), ('down_proj', 'mlp_hidden')]:
      x = inputs[site][layer]
      plain = np.asarray(
        ups['grpo']['layers'][layer]['mlp'][name]['kernel'][...]
      )
      proj = np.asarray(
        ups['nspo']['layers'][layer]['mlp'][name]['kernel'][...]
      )
      # Adam's first update is ~lr * sign(g): entries of magnitude 1e-6.
      scale = np.linalg.norm(x) * np.linalg.norm(plain)
      assert np.linalg.norm(x @ plain) > 0.1 * scale  # plain moves outputs
      assert np.linalg.norm(x @ proj) < 1e-4 * scale  # NSPO does not
      assert np.linalg.norm(proj) > 0.1 * np.linalg.norm(plain)
  # Attention kernels are outside these sites: the same update in both arms.
  np.testing.assert_array_equal(
    ups['nspo']['layers'][0]['attn']['q_proj']['kernel'][...],
    ups['grpo']['layers'][0]['attn']['q_proj']['kernel'][...],
  )
  with pytest.raises(ValueError, match='unknown arm'):
    safety_rl.make_optimizer(c, 'dpo', spaces, params)


def test_frozen_mask_and_bad_pattern():
  cfg = models.get_preset(
    'tiny', vocab_size=20, d_model=16, n_layers=1, d_ff=32, max_seq_len=8
  )
  _, params = _init(cfg)
  mask = safety_rl.frozen_mask(params, default.get_config().rl.trainable)
  flat = dict(zip(optim.leaf_paths(mask), jax.tree.leaves(mask), strict=True))
  assert flat['embed/embedding'] and flat['norm/scale']
  assert flat['layers/0/input_layernorm/scale']
  assert not flat['layers/0/mlp/down_proj/kernel']
  assert not flat['layers/0/attn/o_proj/kernel']
  assert sum(not v for v in flat.values()) == 7  # q k v o gate up down
  with pytest.raises(ValueError, match='match no parameter'):
    safety_rl.frozen_mask(params, r'nothing_here$')


def test_unknown_arm_in_config_is_rejected_before_work(tmp_path):
  c = tiny.get_config()
  c.rl.arms = ('grpo', 'ppo')
  with pytest.raises(ValueError, match="config.rl.arms: unknown name 'ppo'"):
    experiment.run(c, str(tmp_path))
  assert not any(tmp_path.iterdir())


def test_prompt_batches_follow_the_arm_fraction_and_the_fit_half(tmp_path):
  c = tiny.get_config()
  c.sft.steps = 1
  prep = sft_world.prepare(c, str(tmp_path), seed=0)
  fit = {bytes(p) for p in prep.eval_sets['general_fit']['prompt']}
  n = c.rl.prompts_per_step
  safety_only = safety_rl.make_prompt_batches(c, prep, 'grpo')(3)
  assert safety_only['harmful'].all() and len(safety_only['harmful']) == n
  mixed = safety_rl.make_prompt_batches(c, prep, 'nspo_mixed')(3)
  benign = mixed['prompt'][~mixed['harmful']]
  assert len(benign) == n - round(n * c.rl.mixed_harmful_fraction)
  assert all(bytes(p) in fit for p in benign)  # never the held-out half
  c.rl.mixed_harmful_fraction = 0.99  # rounds to no benign prompt
  with pytest.raises(ValueError, match='mixed_harmful_fraction=0.99'):
    safety_rl.make_prompt_batches(c, prep, 'grpo_mixed')


class _Killed(Exception):
  pass


@pytest.mark.slow
def test_rl_stage_resumes_from_a_mid_run_checkpoint(tmp_path, monkeypatch):
  c = tiny.get_config()
  c.rl.checkpoint_every = 1
  prep = sft_world.prepare(c, str(tmp_path / 'run'), seed=0)
  spaces, _ = experiment.estimate_spaces(c, prep)
  whole, _ = safety_rl.train_arm(c, prep, 'nspo', spaces, str(tmp_path / 'a'))
  k = c.rl.steps // 2
  assert 0 < k < c.rl.steps
  make = safety_rl.make_prompt_batches

  def killing(config, prep, arm):
    batches = make(config, prep, arm)

    def fn(step):
      if step == k:
        raise _Killed(step)
      return batches(step)

    return fn

  monkeypatch.setattr(safety_rl, 'make_prompt_batches', killing)
  with pytest.raises(_Killed):
    safety_rl.train_arm(c, prep, 'nspo', spaces, str(tmp_path / 'b'))
  monkeypatch.setattr(safety_rl, 'make_prompt_batches', make)
  resumed, history = safety_rl.train_arm(
    c, prep, 'nspo', spaces, str(tmp_path / 'b')
  )
  assert int(resumed.step) == c.rl.steps
  assert [h['step'] for h in history] == [
    s for s in range(1, c.rl.steps + 1) if s % c.rl.eval_every == 0
  ]
  resume_checks.assert_resumed_run_identical(
    resumed.params, whole.params, prep.params
  )


@pytest.mark.slow
def test_tiny_run_keeps_general_accuracy_closer_than_plain_grpo(tmp_path):
  c = tiny.get_config()
  m = experiment.run(c, str(tmp_path))
  schema.validate_metrics(m, str(tmp_path / 'metrics.json'))
  assert m['config_name'] == 'tiny'
  s = m['summary']
  assert len(m['curves'][0]['series']) == len(c.rl.arms)
  # The effect the tiny config shows, on the held-out half (8 general
  # examples, steps of 1/8). Measured (seed 0): base accuracy 0.75, tax
  # plain GRPO 0.25, NSPO 0.00; one seed shows no effect in the report.
  assert s['num_seeds'] == 1 and m['effects'][0]['num_seeds'] == 1
  assert s['base_general_accuracy'] >= 0.5
  assert s['nspo_alignment_tax'] <= 0.125
  assert s['grpo_alignment_tax'] >= s['nspo_alignment_tax'] + 0.125
  # A second run resumes every loop from its final checkpoint: same numbers.
  again = experiment.run(c, str(tmp_path))
  for k, v in s.items():
    if k != 'seconds':
      assert again['summary'][k] == v, k


@pytest.mark.slow
def test_prepare_loads_a_hugging_face_directory(tmp_path):
  c = tiny.get_config()
  task = safety.build(sft_world.task_config(c))
  cfg = sft_world.model_config(c, task.tokenizer.vocab_size, 32)
  model = models.Transformer(cfg, rngs=nnx.Rngs(3))
  hf_dir = tmp_path / 'hf'
  models.save_hf(model, cfg, str(hf_dir))
  c.model.hf_dir = str(hf_dir)
  with pytest.raises(FileNotFoundError, match='tokenizer.json'):
    sft_world.prepare(c, str(tmp_path / 'a'), seed=0)
  task.tokenizer.save(str(hf_dir))
  c.sft.steps = 0
  prep = sft_world.prepare(c, str(tmp_path / 'b'), seed=0)
  want = jax.tree.leaves(nnx.state(model))
  for a, b in zip(jax.tree.leaves(prep.params), want, strict=True):
    np.testing.assert_array_equal(a, b)
  c.task.num_topics = 3  # another vocabulary
  with pytest.raises(ValueError, match='not the task tokenizer'):
    sft_world.prepare(c, str(tmp_path / 'c'), seed=0)
