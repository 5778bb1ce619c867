"""Smoke test: the KV-cache generation benchmark runs at minimal size."""

from experiments.benchmarks import generation_kv_cache


def test_generation_kv_cache_smoke(capsys):
  result = generation_kv_cache.main(['--smoke'])
  assert result['identical_tokens']
  # Both timings were measured, and the reported speedup is their ratio,
  # recompute over KV cache (smoke sizes are too small for its value to
  # mean anything).
  assert 0 < result['kv_s'] < 60 and 0 < result['recompute_s'] < 60
  assert result['speedup'] == result['recompute_s'] / result['kv_s']
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert last.startswith(
    f'generation_kv_cache: speedup={result["speedup"]:.2f}x'
  )
  assert 'KV-cache vs full-prefix recompute, 4 new tokens' in last
