"""CKU's `paper` config end to end on a Hugging Face checkpoint.

`transformers` writes a tiny random Qwen2 (safetensors, one layer) beside
the safety task's word tokenizer. The `paper` config (lock rate, scoring,
losses), with only the sizes and the locked layers overridden, runs through
`run(config, workdir)` from that checkpoint; the layer indices are checked
against the checkpoint's own depth before any work.
"""

import math

import pytest

from cku import config as config_lib
from cku import experiment
from common import schema
from experiments.cku.configs import paper
from tests import hf_checkpoints


def _config(tmp_path):
  c = paper.get_config()
  c.seeds = (0,)
  c.task.update({'num_knowledge': 8, 'num_arithmetic': 8, 'num_topics': 2})
  c.sft.update({'steps': 2, 'batch_size': 8, 'warmup_steps': 1})
  c.cku.update({'steps': 2, 'eval_every': 2, 'checkpoint_every': 2,
                'score_batch_size': 8, 'forget_batch_size': 8,
                'retain_batch_size': 8})  # fmt: skip
  hf_checkpoints.for_safety_task(c, tmp_path / 'hf')
  return c


def test_locked_layers_are_checked_against_the_checkpoint(tmp_path):
  c = _config(tmp_path)  # the paper's layers 8-12; the checkpoint has 1
  with pytest.raises(schema.ConfigError, match=r'cku.layers\[0\].*n_layers=1'):
    config_lib.validate_config(c)


@pytest.mark.slow  # compiles dominate
def test_paper_config_runs_end_to_end_on_the_checkpoint(tmp_path):
  c = _config(tmp_path)
  c.cku.layers = (0,)
  m = experiment.run(c, str(tmp_path / 'work'))
  assert (tmp_path / 'work' / 'metrics.json').is_file()
  assert any(
    isinstance(v, float) and math.isfinite(v) for v in m['summary'].values()
  )
