"""Smoke test: the SkillPack benchmark runs at minimal size."""

import pytest

from experiments.benchmarks import graftllm_pack


@pytest.mark.slow
def test_graftllm_pack_smoke(capsys):
  r = graftllm_pack.main(['--smoke'])
  # The pack is smaller than the dense float16 delta, GPTQ is at least as
  # accurate as RTN on the calibration inputs, and the factors and the
  # merged weights give the same forward (float32 matmuls of size ~1).
  assert r['size_ratio'] > 1.0
  assert r['gptq_rel_err'] <= r['rtn_rel_err']
  assert r['forward_max_diff'] < 1e-3
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert last.startswith(f'graftllm_pack: size_ratio={r["size_ratio"]:.1f}x')
