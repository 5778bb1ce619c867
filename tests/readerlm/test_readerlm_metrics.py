"""The paper's Markdown metrics on hand-computed cases."""

import hypothesis
import pytest
from hypothesis import strategies as st

from readerlm import metrics


def test_tokenize_is_unicode_aware():
  assert metrics.tokenize('Café, 世界!') == ['café', ',', '世', '界', '!']
  assert metrics.tokenize('Ärger über Öl') == ['ärger', 'über', 'öl']


def test_rouge_l_hand_computed():
  # LCS(a b c d, a c d e) = a c d = 3; P = R = 3/4.
  r = metrics.rouge_l('a b c d', 'a c d e')
  assert r['precision'] == pytest.approx(0.75)
  assert r['recall'] == pytest.approx(0.75)
  assert r['f1'] == pytest.approx(0.75)
  # P = 2/2, R = 2/4 -> F = 2/3.
  assert metrics.rouge_l('a c', 'a b c d')['f1'] == pytest.approx(2 / 3)
  assert metrics.rouge_l('', '')['f1'] == 1.0
  assert metrics.rouge_l('x', '')['f1'] == 0.0
  # CJK scores as characters (rouge-score's tokenizer gives 0 here).
  assert metrics.rouge_l('世界和平', '世界')['f1'] == pytest.approx(2 / 3)


def test_word_error_rates_hand_computed():
  # ref a b c d, hyp a x c d e: 1 substitution, 1 insertion, N = 4.
  r = metrics.word_error_rates('a x c d e', 'a b c d')
  assert r == pytest.approx({'wer': 0.5, 'sub': 0.25, 'ins': 0.25, 'del': 0.0})
  r = metrics.word_error_rates('a d', 'a b c d')
  assert r == pytest.approx({'wer': 0.5, 'sub': 0.0, 'ins': 0.0, 'del': 0.5})
  assert metrics.word_error_rates('', 'a b')['wer'] == 1.0
  assert metrics.word_error_rates('a b', '')['ins'] == 2.0


def test_edit_distances_hand_computed():
  assert metrics.levenshtein('sitting', 'kitten') == pytest.approx(3 / 7)
  # A transposition: Levenshtein 2 edits, Damerau 1, over length 2.
  assert metrics.levenshtein('ca', 'ac') == pytest.approx(1.0)
  assert metrics.damerau('ca', 'ac') == pytest.approx(0.5)
  # Unrestricted Damerau: CA -> ABC is 2 (OSA would give 3), over 3.
  assert metrics.damerau('CA', 'ABC') == pytest.approx(2 / 3)
  assert metrics.jaro_winkler('MARTHA', 'MARHTA') == pytest.approx(
    0.9611, abs=1e-4
  )
  assert metrics.jaro_winkler('abc', 'abc') == 1.0


def test_long_inputs_fall_back_to_lines():
  a = 'x' * 30 + '\nsame\n'
  b = 'y' * 30 + '\nsame\n'
  # Over max_chars the unit is a line: 1 of 2 lines differs.
  assert metrics.levenshtein(a, b, max_chars=10) == pytest.approx(0.5)


def _lev(a, b):
  prev = list(range(len(b) + 1))
  for i, x in enumerate(a, 1):
    cur = [i]
    for j, y in enumerate(b, 1):
      cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
    prev = cur
  return prev[-1]


def _lcs(a, b):
  dp = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
  for i in range(len(a)):
    for j in range(len(b)):
      dp[i + 1][j + 1] = (
        dp[i][j] + 1 if a[i] == b[j] else max(dp[i][j + 1], dp[i + 1][j])
      )
  return dp[-1][-1]


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(st.text('abc d', max_size=12), st.text('abc d', max_size=12))
def test_against_pure_python_references(a, b):
  n = max(len(a), len(b))
  expected = _lev(a, b) / n if n else 0.0
  assert metrics.levenshtein(a, b) == pytest.approx(expected)
  assert metrics.damerau(a, b) <= metrics.levenshtein(a, b) + 1e-12
  ta, tb = metrics.tokenize(a), metrics.tokenize(b)
  assert metrics.lcs_length(ta, tb) == _lcs(ta, tb)


def test_markdown_scores_has_every_metric():
  s = metrics.markdown_scores('# A\n\ntext', '# A\n\ntext')
  assert set(s) == set(metrics.METRIC_NAMES)
  assert s['rouge_l'] == 1.0 and s['levenshtein'] == 0.0 and s['wer'] == 0.0
