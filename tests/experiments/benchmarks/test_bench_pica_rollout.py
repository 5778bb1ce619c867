"""Smoke test: the PiCA rollout benchmark runs at minimal size."""

import pytest

from experiments.benchmarks import pica_rollout


@pytest.mark.slow
def test_pica_rollout_smoke(capsys):
  result = pica_rollout.main(['--smoke'])
  # greedy: the cache-less agent loop produces the same responses
  assert result['identical'] == 1.0
  assert result['speedup'] > 0
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert last.startswith('pica_rollout: speedup=')
  assert 'KV-cache multi-turn vs prefix recompute' in last
