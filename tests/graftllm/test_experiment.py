"""The experiment: configs, bad input, and the tiny config end to end."""

import json

import jax
import numpy as np
import pytest

from common import schema
from experiments.graftllm.configs import default
from experiments.graftllm.configs import paper
from experiments.graftllm.configs import tiny
from graftllm import compress
from graftllm import experiment
from graftllm import skillpack


@pytest.mark.parametrize('module', [tiny, default, paper])
def test_shipped_configs_validate(module):
  experiment.validate_config(module.get_config())


def test_paper_config_is_the_released_setting():
  c = paper.get_config()
  cc = experiment.compression_config(c.compression)
  assert cc.mlp_bit_groups == ((8, 20), (4, 180), (2, 1200))
  assert cc.attn_bit_groups == ((8, 20), (4, 180), (2, 800))
  assert (cc.mlp_rank, cc.attn_rank, cc.group_size) == (1400, 1000, 128)
  assert c.calibration_samples == 128
  assert c.model.preset == 'llama-3.1-8b'
  assert c.model.hf_dir.endswith('Llama-3.1-8B-Instruct')


@pytest.mark.parametrize(
  'field, value, allowed',
  [
    ('compression.alpha', 0.0, 'in (0.0, 1.0]'),
    ('compression.mlp_beta', 1.5, 'in (0.0, 1.0]'),
    ('compression.attn_beta', -0.1, 'in (0.0, 1.0]'),
    ('compression.mlp_bit_groups', ((5, -1),), 'bits=5 is not supported'),
    ('compression.mlp_bit_groups', ((4, -1), (2, 3)), 'last group only'),
    ('sweep.betas', (0.5, 2.0), 'in (0.0, 1.0]'),
    ('sweep.ablations', ('uniform', 'lora'), "unknown name 'lora'"),
  ],
)
def test_bad_values_name_the_field(field, value, allowed, tmp_path):
  c = tiny.get_config()
  section, key = field.split('.')
  c[section][key] = value
  with pytest.raises(schema.ConfigError) as info:
    experiment.run(c, str(tmp_path / 'w'))
  assert field in str(info.value) and allowed in str(info.value)
  assert not (tmp_path / 'w').exists()  # nothing written


def test_unknown_field_did_you_mean():
  c = tiny.get_config()
  c.compression.aplha = 0.1
  with pytest.raises(
    schema.ConfigError, match='did you mean compression.alpha'
  ):
    experiment.validate_config(c)


def test_rank_and_calibration_width_errors_name_the_tensor():
  k = np.ones((16, 24), np.float32)
  cfg = compress.CompressionConfig(mlp_rank=17)
  with pytest.raises(
    ValueError, match=r"rank 17 for 'layers/0/mlp/up_proj/kernel'.*1\.\.16"
  ):
    compress.compress_module('layers/0/mlp/up_proj/kernel', k, cfg)
  with pytest.raises(
    ValueError,
    match=r"calibration width mismatch for 'l/mlp/up_proj/kernel'.*width 16",
  ):
    compress.compress_module(
      'l/mlp/up_proj/kernel', k, compress.CompressionConfig(), np.eye(24)
    )


@pytest.mark.slow
def test_tiny_end_to_end(tmp_path):
  c = tiny.get_config()
  m = experiment.run(c, str(tmp_path))
  s = m['summary']
  # Fine-tuning learns each task; the base model does not know it.
  assert s['full_ft_own_em'] >= s['base_own_em'] + 0.25
  # Continual learning: exact by construction, measured on the model.
  assert s['continual_bit_identical'] is True
  assert s['removal_restores_base'] is True
  # Sequential fine-tuning forgets task A; the library does not.
  r0 = json.loads((tmp_path / 'units' / 'seed0.json').read_text())['result']
  cl = r0['continual']
  assert cl['seq_ft_arith_after'] < cl['seq_ft_arith_before']
  assert cl['arith_after_b'] == cl['arith_before_b']
  assert 1.0 < s['pack_bits_per_param'] < 16.0
  assert r0['dpo_pairs']['arith'] > 0
  pack = skillpack.load(tmp_path / 'seed0' / 'packs' / 'arith.safetensors')
  assert pack.bits_per_param() == pytest.approx(
    r0['pack']['arith']['bits_per_param']
  )
  assert (tmp_path / 'score_vs_bits.png').stat().st_size > 1000
  assert json.loads((tmp_path / 'metrics.json').read_text())['summary'] == s
  # A rerun reuses the per-seed results (same numbers).
  again = experiment.run(c, str(tmp_path))
  assert {k: v for k, v in again['summary'].items() if k != 'seconds'} == {
    k: v for k, v in s.items() if k != 'seconds'
  }


def test_preference_pairs_hand_case():
  # 3 items, prompt length 2, response length 3. Item 0: fine-tuned right,
  # base wrong -> a pair; item 1: both right; item 2: fine-tuned wrong.
  data = {
    'prompt': np.array([[0, 5], [6, 7], [8, 9]]),
    'prompt_mask': np.array([[0, 1], [1, 1], [1, 1]], bool),
    'target': np.array([[3, 1, 0], [4, 1, 0], [2, 1, 0]]),
    'tokens': np.array([[0, 5, 3, 1, 0], [6, 7, 4, 1, 0], [8, 9, 2, 1, 0]]),
    'attention_mask': np.array([[0, 1, 1, 1, 0], [1] * 4 + [0], [1] * 4 + [0]]),
    'loss_mask': np.array([[0, 0, 1, 1, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 0]]),
  }
  ft = (np.array([True, True, False]), None, None)
  base_tokens = np.array([[7, 7, 1, 9], [4, 1, 0, 0], [2, 1, 0, 0]])
  base_mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 0, 0]], bool)
  base = (np.array([False, True, True]), base_tokens, base_mask)
  chosen, rejected = experiment.preference_pairs(data, ft, base)
  np.testing.assert_array_equal(chosen['tokens'], [[0, 5, 3, 1, 0]])
  np.testing.assert_array_equal(rejected['tokens'], [[0, 5, 7, 7, 1]])
  np.testing.assert_array_equal(rejected['attention_mask'], [[0, 1, 1, 1, 1]])
  np.testing.assert_array_equal(rejected['loss_mask'], [[0, 0, 1, 1, 1]])
  none = (np.array([False, False, False]), None, None)
  assert experiment.preference_pairs(data, none, base) is None


def test_base_model_from_a_hugging_face_directory(tmp_path):
  from flax import nnx

  from common import models

  c = tiny.get_config()
  world, sets = experiment.build_tasks(c)
  cfg = models.build_config(
    c.model, vocab_size=world.tokenizer.vocab_size, max_seq_len=32
  )
  model = models.Transformer(cfg, rngs=nnx.Rngs(3))
  models.save_hf(model, cfg, tmp_path / 'hf')
  world.tokenizer.save(tmp_path / 'hf')
  c.model.hf_dir = str(tmp_path / 'hf')
  shared = experiment._shared(c, world, sets)
  want = models.split(model)[1]
  got = shared['hf_params']
  for x, y in zip(
    jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True
  ):
    np.testing.assert_array_equal(x, y)
  c.model.hf_dir = str(tmp_path / 'missing')
  with pytest.raises(FileNotFoundError, match='missing'):
    experiment._shared(c, world, sets)
