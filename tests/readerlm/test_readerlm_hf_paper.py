"""ReaderLM's `paper` config end to end on a Hugging Face checkpoint.

`transformers` writes a tiny random Qwen2 (safetensors) beside a
byte-level BPE tokenizer.json with Qwen2's ChatML specials and a
tokenizer_config.json naming `<|im_end|>` as eos. The `paper` config, with
only the sizes overridden (the `tiny` ones), runs through the same
`run(config, workdir)`: the recipe starts from the checkpoint's weights
and encodes with its tokenizer.
"""

import math

import numpy as np
import pytest

from common import schema
from common.tokenizers import bpe
from experiments.readerlm.configs import paper
from experiments.readerlm.configs import tiny
from readerlm import experiment
from readerlm import prompt
from tests import hf_checkpoints

SIZES = (
  'seeds', 'world', 'pages', 'max_prompt_len', 'max_new_tokens', 'sft',
  'specialist', 'dpo', 'self_play', 'eval_pages', 'checkpoint_every',
  'real', 'batch_size',
)  # fmt: skip


def _hf_dir(root, context=400):
  hf_dir = root / 'Qwen2-tiny'
  texts = [prompt.chat_prompt('<p>Hello world</p> # Title - item')] * 20
  tok = bpe.train_bpe(texts, vocab_size=300)
  model = hf_checkpoints.write_qwen2(hf_dir, tok, context)
  return hf_dir, model


def _config(hf_dir, tmp_path):
  c = paper.get_config()
  small = tiny.get_config()
  for key in SIZES:
    c[key] = small[key]
  c.real.nodejs_dir = str(tmp_path / 'none')
  c.model.hf_dir = str(hf_dir)
  return c


def test_a_checkpoint_too_short_for_the_budget_is_refused(tmp_path):
  hf_dir, _ = _hf_dir(tmp_path, context=64)
  c = _config(hf_dir, tmp_path)
  with pytest.raises(schema.ConfigError, match='max_prompt_len'):
    experiment.run(c, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()  # refused before any work
  c.model.hf_dir = str(tmp_path / 'nope')
  with pytest.raises(schema.ConfigError, match='model.hf_dir'):
    experiment.run(c, str(tmp_path / 'run'))


@pytest.mark.slow  # the tiny recipe: ~60 s idle
def test_paper_config_runs_end_to_end_on_the_checkpoint(tmp_path):
  hf_dir, _ = _hf_dir(tmp_path)
  c = _config(hf_dir, tmp_path)
  m = experiment.run(c, str(tmp_path / 'run'))
  for key in ('sft_rouge_l', 'dpo_rouge_l'):
    assert all(math.isfinite(v) for v in np.ravel(m['summary'][key]))
  # The run encodes with the checkpoint's tokenizer, not a trained BPE.
  saved = (tmp_path / 'run' / 'tokenizer' / 'tokenizer.json').read_text()
  assert saved == (hf_dir / 'tokenizer.json').read_text()
