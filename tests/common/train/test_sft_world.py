"""The safety world's SFT base model: config pieces and the optimizer."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common.train import sft_world


def test_base_config_uses_the_conventional_names():
  c = sft_world.base_config()
  assert {'learning_rate', 'warmup_steps', 'steps'} <= set(c.sft)
  assert c.model.n_layers == 2 and c.model.preset == 'tiny'
  cfg = sft_world.model_config(c, vocab_size=77, max_len=5)
  assert (cfg.vocab_size, cfg.d_model, cfg.max_seq_len) == (77, 64, 8)
  task = sft_world.task_config(c)
  assert task.num_knowledge == 48


def test_sft_optimizer_equals_adamw_with_warmup_cosine():
  # The schedule the experiments used before moving to common.optim.
  s = sft_world.base_config().sft
  s.update({'steps': 6, 'warmup_steps': 2, 'weight_decay': 0.1})
  want = optax.adamw(
    optax.warmup_cosine_decay_schedule(
      0.0, s.learning_rate, 2, 6, s.learning_rate * 0.1
    ),
    weight_decay=0.1,
  )
  got = sft_world.sft_optimizer(s)
  params = {'w': jnp.arange(6.0).reshape(2, 3), 'b': jnp.ones(3)}
  sw, sg = want.init(params), got.init(params)
  for i in range(6):
    g = jax.tree.map(lambda x, i=i: jnp.sin(x + i), params)
    uw, sw = want.update(g, sw, params)
    ug, sg = got.update(g, sg, params)
    for a, b in zip(jax.tree.leaves(ug), jax.tree.leaves(uw), strict=True):
      np.testing.assert_array_equal(a, b)
    params = optax.apply_updates(params, uw)


def test_missing_hf_dir_is_a_clear_error(tmp_path):
  c = sft_world.base_config()
  c.model.hf_dir = str(tmp_path / 'nope')
  with pytest.raises(FileNotFoundError, match='does not exist'):
    sft_world.prepare(c, str(tmp_path / 'run'), seed=0)
