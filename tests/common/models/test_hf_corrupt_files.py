"""Corrupt Hugging Face files: each error names the file (and line)."""

import json

import numpy as np
import pytest
import safetensors.numpy
from flax import nnx

from common import models
from common.models import hf


@pytest.fixture
def checkpoint(tmp_path):
  config = models.get_preset('tiny')
  models.save_hf(
    models.Transformer(config, rngs=nnx.Rngs(0)), config, str(tmp_path)
  )
  return tmp_path


def test_malformed_config_json_names_file_and_line(checkpoint):
  path = checkpoint / 'config.json'
  path.write_text('{\n  "hidden_size": 64,\n  oops\n}')
  with pytest.raises(
    hf.HFFormatError, match=r'config.json: not valid JSON \(line 3'
  ):
    models.load_hf(str(checkpoint))


def test_truncated_safetensors_names_the_file(checkpoint):
  path = checkpoint / hf.SINGLE_FILE
  path.write_bytes(path.read_bytes()[:5])
  with pytest.raises(
    hf.HFFormatError, match=r'model.safetensors: not a readable safetensors'
  ):
    models.load_hf(str(checkpoint))


def test_malformed_index_names_the_file(checkpoint):
  (checkpoint / hf.SINGLE_FILE).unlink()
  safetensors.numpy.save_file(
    {'x': np.zeros(2, 'f4')}, str(checkpoint / 'a.safetensors')
  )
  (checkpoint / hf.INDEX_FILE).write_text('{"weight_map": ')
  with pytest.raises(
    hf.HFFormatError, match=rf'{hf.INDEX_FILE}: not valid JSON'
  ):
    models.load_hf(str(checkpoint))
  (checkpoint / hf.INDEX_FILE).write_text(json.dumps({'metadata': {}}))
  with pytest.raises(hf.HFFormatError, match='no "weight_map" object'):
    models.load_hf(str(checkpoint))


def test_corrupt_tokenizer_json_names_the_file(tmp_path):
  (tmp_path / 'tokenizer.json').write_text('{"model": 3}')
  with pytest.raises(hf.HFFormatError, match=r'tokenizer.json: not a readable'):
    models.load_hf_tokenizer(str(tmp_path))
