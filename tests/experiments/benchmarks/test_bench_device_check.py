"""Smoke test: the accelerator device check runs at a toy shape on CPU."""

import math

import pytest

from common import models
from experiments.benchmarks import device_check


def test_flops_per_token_hand_computed():
  config = models.get_preset(
    'tiny', vocab_size=10, d_model=4, n_heads=2, n_kv_heads=1, d_ff=8,
    n_layers=1,
  )  # fmt: skip
  # q 4x4, k/v 4x2 each, o 4x4, mlp 3 x 4x8, head 4x10: N = 16+16+16+96+40.
  n = 16 + 8 + 8 + 16 + 96 + 40
  assert device_check.flops_per_token(config, 3) == 6 * n + 12 * 1 * 4 * 3


@pytest.mark.slow  # ~30-80 s on 2 cores: make test-all runs it
def test_device_check_tiny_runs_and_prints_ratios(capsys):
  pytest.importorskip('transformers')  # peers extra
  result = device_check.main(['--tiny', '--peak-tflops', '1'])
  assert set(result['ratios']) == {'train', 'gen_b1', 'gen_b2'}
  assert all(math.isfinite(v) and v > 0 for v in result['ratios'].values())
  assert 0 < result['mfu'] < 1
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert last.startswith('device_check: train=')
  assert 'JAX tokens/s / PyTorch tokens/s' in last
