"""Smoke test: the JAX-vs-PyTorch training benchmark runs at minimal size."""

import pytest

from experiments.benchmarks import lm_train_vs_torch
from tests import tolerances as tol


def test_lm_train_vs_torch_smoke(capsys):
  pytest.importorskip('torch')  # bench extra
  result = lm_train_vs_torch.main(['--smoke'])
  # Same function, same init, same optimizer: losses agree after an update
  # (two float32 programs through a model and one optimizer step).
  assert result['jax_losses'][1] == tol.approx(
    result['torch_losses'][1], tol.REDUCTION
  )
  assert result['jax_losses'][1] < result['jax_losses'][0]
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert last.startswith('lm_train_vs_torch: ratio=')
  assert '(JAX tokens/s / PyTorch tokens/s, tiny' in last
