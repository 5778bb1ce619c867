"""Tests for common/rl/qa_rewards.py (hand cases from the SQuAD rules)."""

import pytest

from common.rl import qa_rewards as qa


def test_normalize():
  assert qa.normalize_answer('The  Eiffel-Tower!') == 'eiffeltower'
  assert qa.normalize_answer('an apple, a pear') == 'apple pear'


def test_exact_match_max_over_aliases():
  assert qa.exact_match('the Vel Corp.', ['Zed', 'vel corp']) == 1.0
  assert qa.exact_match('Vel', ['vel corp']) == 0.0


def test_token_f1_hand_case():
  # pred {vel, corp, ltd}, gold {vel, corp}: P = 2/3, R = 1, F1 = 0.8.
  assert qa.token_f1('Vel Corp Ltd', ['vel corp']) == pytest.approx(0.8)
  assert qa.token_f1('nothing', ['vel corp']) == 0.0
  assert qa.token_f1('Vel Corp Ltd', ['x', 'vel corp ltd']) == 1.0


def test_reward_reads_last_answer_tag():
  comps = [
    '<answer> Paris </answer>',
    '<answer> Rome </answer> <answer> paris </answer>',
    'Paris',
    '<answer> Paris',
  ]
  out = qa.exact_match_reward(['p'] * 4, comps, [['Paris']] * 4, hops=[1] * 4)
  assert out == [1.0, 1.0, 0.0, 0.0]


def test_errors():
  with pytest.raises(ValueError, match='non-empty list'):
    qa.exact_match('x', 'x')
  with pytest.raises(ValueError, match='2 completions but 1'):
    qa.exact_match_reward(['p', 'p'], ['a', 'b'], [['a']])
