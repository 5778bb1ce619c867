"""Smoke test: the KV-cache generation benchmark runs at minimal size."""

from experiments.benchmarks import generation_kv_cache


def test_generation_kv_cache_smoke(capsys):
  result = generation_kv_cache.main(['--smoke'])
  assert result['identical_tokens']
  assert result['speedup'] > 0
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert last.startswith('generation_kv_cache: speedup=')
  assert 'KV-cache vs full-prefix recompute, 4 new tokens' in last
