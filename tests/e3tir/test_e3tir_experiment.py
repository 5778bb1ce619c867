"""The tiny experiment end to end (slow on a loaded 2-core machine)."""

import json

import pytest

from e3tir import experiment
from experiments.e3tir.configs import tiny


@pytest.mark.slow
def test_tiny_run(tmp_path):
  c = tiny.get_config()
  m = experiment.run(c, str(tmp_path))
  s = m['summary']
  for arm in c.arms:
    for k in ('accuracy', 'tool_calls', 'tool_failure_rate', 'roi'):
      assert f'{arm}_{k}' in s
  assert s['num_expert_e3tir'] < s['num_expert_full']
  names = [e['baseline'] for e in m['effects']]
  assert 'sft_rl' in names
  # The equal-data control: SFT-then-RL on exactly E3-TIR's traces.
  pairs = {(e['method'], e['baseline']) for e in m['effects']}
  assert ('e3tir', 'sft_rl_matched') in pairs
  rows = {r[0]: r for r in m['tables'][0]['rows']}
  traces = m['tables'][0]['columns'].index('expert traces')
  matched = experiment.NAMES['sft_rl_matched']
  assert rows[matched][traces] == str(s['num_expert_e3tir'])
  assert json.loads((tmp_path / 'metrics.json').read_text())['summary'] == s
  curves = {c_['title'] for c_ in m['curves']}
  assert any('entropy' in t for t in curves)
