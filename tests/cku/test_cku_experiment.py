"""The CKU experiment: configs, optimizers, and an end-to-end tiny run."""

import jax
import numpy as np
import pytest

from cku import experiment
from common.report import schema
from experiments.cku.configs import paper
from experiments.cku.configs import tiny
from nspo import lm
from nspo import sft


def test_paper_config_constructs_with_tiny_model_shape():
  c = paper.get_config()
  assert c.cku.lock_rate == 0.8
  assert tuple(c.cku.layers) == (8, 9, 10, 11, 12)
  real = sft.model_config(c, vocab_size=1000, max_len=64)
  assert (real.n_layers, real.d_model, real.d_ff) == (32, 4096, 11008)
  assert real.n_kv_heads == 32 and real.rope_scaling is None
  assert experiment.selected_layers(c, 32) == [8, 9, 10, 11, 12]
  c.model = c.model.__class__(
    {'preset': 'tiny', 'd_model': 16, 'n_layers': 2, 'd_ff': 32, 'hf_dir': ''}
  )
  c.cku.layers = ()
  assert experiment.selected_layers(c, 2) == [0]
  _, params = lm.init_model(sft.model_config(c, 50, 16), 0)
  locked = {0: np.arange(32) % 5 != 0}
  grads = jax.tree.map(np.ones_like, params)
  for arm in c.cku.arms:
    tx = experiment.make_optimizer(c, arm, locked, params)
    u, _ = tx.update(grads, tx.init(params), params)
    down = np.asarray(u['layers'][0]['mlp']['down_proj']['kernel'][...])
    embed = np.asarray(u['embed']['embedding'][...])
    if arm == 'ga':
      assert np.all(down != 0) and np.all(embed != 0)
    elif arm == 'ga_layers':
      assert np.all(down != 0) and np.all(embed == 0)
    else:  # cku: only unlocked neurons of the selected layer move
      assert np.all(down[locked[0]] == 0) and np.all(down[~locked[0]] != 0)
      assert np.all(embed == 0)
  with pytest.raises(ValueError, match='unknown arm'):
    experiment.make_optimizer(c, 'rmu', locked, params)


@pytest.mark.slow
def test_tiny_run_writes_valid_metrics(tmp_path):
  c = tiny.get_config()
  m = experiment.run(c, str(tmp_path))
  schema.validate_metrics(m, str(tmp_path / 'metrics.json'))
  for arm in c.cku.arms:
    assert 0.0 <= m['summary'][f'{arm}_forget_accuracy'] <= 1.0
  c.cku.loss = 'npo'
  c.cku.arms = ('cku',)
  m = experiment.run(c, str(tmp_path / 'npo'))
  assert 'cku_forget_accuracy' in m['summary']
