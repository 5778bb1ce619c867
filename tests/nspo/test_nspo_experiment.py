"""The NSPO experiment: configs, optimizers, and an end-to-end tiny run."""

import jax
import numpy as np
import pytest
from flax import nnx

import nspo
from common import models
from common.report import schema
from experiments.nspo.configs import default
from experiments.nspo.configs import paper
from experiments.nspo.configs import tiny
from nspo import experiment
from nspo import lm
from nspo import safety_data
from nspo import sft
from nspo.targets import leaf_paths


def test_safety_reward_hand_case():
  refused = np.array([True, False, True, False])
  harmful = np.array([True, True, False, False])
  np.testing.assert_array_equal(
    experiment.safety_reward(refused, harmful), [0.0, -1.0, -1.0, 0.0]
  )


def test_paper_config_constructs_with_tiny_model_shape():
  c = paper.get_config()
  assert c.rl.lr == 1e-6 and c.rl.num_generations == 5
  assert c.rl.prompts_per_step == 320 and c.rl.reproject_every == 5
  assert c.nspo.rule == 'relative' and c.nspo.value == 5e-5
  assert tuple(c.nspo.sites) == ('mlp_in', 'mlp_hidden')
  real = sft.model_config(c, vocab_size=1000, max_len=64)
  assert (real.d_model, real.d_ff, real.n_layers) == (3584, 18944, 28)
  # The same config on a tiny shape: model, spaces and every arm's optimizer.
  c.model = c.model.__class__(
    {'preset': 'tiny', 'd_model': 16, 'n_layers': 2, 'd_ff': 32, 'hf_dir': ''}
  )
  cfg = sft.model_config(c, vocab_size=50, max_len=16)
  _, params = lm.init_model(cfg, 0)
  rng = np.random.default_rng(0)
  moments = {
    s: np.stack([k.T @ k for k in rng.standard_normal((2, 4, d))])
    for s, (_, d) in {'mlp_in': (2, 16), 'mlp_hidden': (2, 32)}.items()
  }
  spaces = nspo.from_moments(moments, nspo.Threshold(c.nspo.rule, c.nspo.value))
  for arm in c.rl.arms:
    tx = experiment.make_optimizer(c, arm, spaces, params)
    state = tx.init(params)
    u, _ = tx.update(jax.tree.map(np.ones_like, params), state, params)
    assert jax.tree.structure(u) == jax.tree.structure(params)
  with pytest.raises(ValueError, match='unknown arm'):
    experiment.make_optimizer(c, 'dpo', spaces, params)


def test_frozen_mask_and_bad_pattern():
  cfg = models.get_preset(
    'tiny', vocab_size=20, d_model=16, n_layers=1, d_ff=32, max_seq_len=8
  )
  _, params = lm.init_model(cfg, 0)
  mask = sft.frozen_mask(params, default.get_config().rl.trainable)
  flat = dict(zip(leaf_paths(mask), jax.tree.leaves(mask), strict=True))
  assert flat['embed/embedding'] and flat['norm/scale']
  assert flat['layers/0/input_layernorm/scale']
  assert not flat['layers/0/mlp/down_proj/kernel']
  assert not flat['layers/0/attn/o_proj/kernel']
  with pytest.raises(ValueError, match='matches no parameter'):
    sft.frozen_mask(params, r'nothing_here$')


@pytest.mark.slow
def test_tiny_run_writes_valid_metrics_and_resumes(tmp_path):
  c = tiny.get_config()
  m = experiment.run(c, str(tmp_path))
  schema.validate_metrics(m, str(tmp_path / 'metrics.json'))
  assert m['config_name'] == 'tiny'
  for arm in c.rl.arms:
    assert 0.0 <= m['summary'][f'{arm}_safety_rate'] <= 1.0
  assert (tmp_path / 'metrics.json').exists()
  assert len(m['curves'][0]['series']) == len(c.rl.arms)
  # A second run resumes every loop from its final checkpoint: same numbers.
  again = experiment.run(c, str(tmp_path))
  for k, v in m['summary'].items():
    if k not in ('wall_seconds', 'null_space_tokens_per_sec'):
      assert again['summary'][k] == v, k


@pytest.mark.slow
def test_prepare_loads_a_hugging_face_directory(tmp_path):
  c = tiny.get_config()
  task = safety_data.build(sft.task_config(c))
  cfg = sft.model_config(c, task.tokenizer.vocab_size, 32)
  model = models.Transformer(cfg, rngs=nnx.Rngs(3))
  hf_dir = tmp_path / 'hf'
  models.save_hf(model, cfg, str(hf_dir))
  c.model.hf_dir = str(hf_dir)
  with pytest.raises(FileNotFoundError, match='tokenizer.json'):
    sft.prepare(c, str(tmp_path / 'a'))
  task.tokenizer.save(str(hf_dir))
  c.sft.steps = 0
  prep = sft.prepare(c, str(tmp_path / 'b'))
  want = jax.tree.leaves(nnx.state(model))
  for a, b in zip(jax.tree.leaves(prep.params), want, strict=True):
    np.testing.assert_array_equal(a, b)
  c.task.num_topics = 3  # another vocabulary
  with pytest.raises(ValueError, match='not the task tokenizer'):
    sft.prepare(c, str(tmp_path / 'c'))
