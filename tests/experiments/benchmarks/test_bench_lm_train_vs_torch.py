"""Smoke test: the JAX-vs-PyTorch training benchmark runs at minimal size."""

import pytest

from experiments.benchmarks import lm_train_vs_torch


def test_lm_train_vs_torch_smoke(capsys):
  pytest.importorskip('torch')  # bench extra
  result = lm_train_vs_torch.main(['--smoke'])
  # Same function, same init, same optimizer: losses agree after an update.
  assert result['jax_losses'][1] == pytest.approx(
    result['torch_losses'][1], rel=1e-4
  )
  assert result['jax_losses'][1] < result['jax_losses'][0]
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert last.startswith('lm_train_vs_torch: ratio=')
  assert '(JAX tokens/s / PyTorch tokens/s, tiny' in last
