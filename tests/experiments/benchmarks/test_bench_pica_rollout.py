"""Smoke test: the PiCA rollout benchmark runs at minimal size."""

import pytest

from experiments.benchmarks import pica_rollout


@pytest.mark.slow
def test_pica_rollout_smoke(capsys):
  result = pica_rollout.main(['--smoke'])
  # greedy: the cache-less agent loop produces the same responses
  assert result['identical'] == 1.0
  # Every phase was timed, and the reported speedup is the ratio of the
  # rollout timings, recompute over KV cache (smoke sizes are too small for
  # its value to mean anything).
  for name in ('kv_s', 'recompute_s', 'reward_s', 'update_s'):
    assert 0 < result[name] < 600, (name, result[name])
  assert result['speedup'] == result['recompute_s'] / result['kv_s']
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert last.startswith(f'pica_rollout: speedup={result["speedup"]:.2f}x')
  assert 'KV-cache multi-turn vs prefix recompute' in last
