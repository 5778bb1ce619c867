"""The paper's evaluation metrics for HTML -> Markdown.

Over a prediction `p` and a reference `r` (strings):

* ROUGE-L: with `L = LCS(tok(p), tok(r))` over Unicode-aware tokens (words
  of letters/digits of any script, each CJK/Thai/... character on its own,
  each punctuation mark on its own), `P = L/|tok(p)|`, `R = L/|tok(r)|`,
  `F = 2PR/(P+R)` (ROUGE-L F1, beta = 1).
* WER over whitespace words (`jiwer`): `(S + D + I) / N` with `N` reference
  words; SUB = `S / N`, INS = `I / N`, DEL = `D / N`.
* normalised Levenshtein and Damerau-Levenshtein (unrestricted) distances
  over characters: `d(p, r) / max(|p|, |r|)` in [0, 1] (rapidfuzz), lower is
  better; inputs longer than `max_chars` are compared over lines instead
  (the O(n m) trap).
* Jaro-Winkler similarity over characters (rapidfuzz, prefix weight 0.1).

Every function is pure Python/rapidfuzz on strings; `markdown_scores`
returns them all in one dict.
"""

from __future__ import annotations

import re
import unicodedata

import jiwer
from rapidfuzz.distance import DamerauLevenshtein
from rapidfuzz.distance import JaroWinkler
from rapidfuzz.distance import Levenshtein

MAX_CHARS = 20_000
METRIC_NAMES = (
  'rouge_l', 'wer', 'sub', 'ins', 'del', 'levenshtein', 'damerau',
  'jaro_winkler',
)  # fmt: skip
LOWER_IS_BETTER = ('wer', 'sub', 'ins', 'del', 'levenshtein', 'damerau')

_SCRIPT_CHARS = (
  r'\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af'
  r'\u0e00-\u0e7f\u1000-\u109f'
)
_TOKEN_RE = re.compile(
  rf'[{_SCRIPT_CHARS}]|[^\W{_SCRIPT_CHARS}]+|[^\w\s]', re.UNICODE
)


def tokenize(text: str) -> list[str]:
  """Unicode-aware tokens: NFKC, lower-cased; see module docstring."""
  text = unicodedata.normalize('NFKC', text).lower()
  return _TOKEN_RE.findall(text)


def lcs_length(a: list[str], b: list[str]) -> int:
  """Length of the longest common subsequence (O(|a| |b|) DP, one row)."""
  if len(a) < len(b):
    a, b = b, a
  prev = [0] * (len(b) + 1)
  for x in a:
    cur = [0]
    for j, y in enumerate(b):
      cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
    prev = cur
  return prev[-1]


def rouge_l(prediction: str, reference: str) -> dict[str, float]:
  """ROUGE-L precision, recall and F1 over `tokenize` tokens.

  Both empty: all 1. One empty: all 0.
  """
  p, r = tokenize(prediction), tokenize(reference)
  if not p and not r:
    return {'precision': 1.0, 'recall': 1.0, 'f1': 1.0}
  if not p or not r:
    return {'precision': 0.0, 'recall': 0.0, 'f1': 0.0}
  lcs = lcs_length(p, r)
  prec, rec = lcs / len(p), lcs / len(r)
  f1 = 0.0 if lcs == 0 else 2 * prec * rec / (prec + rec)
  return {'precision': prec, 'recall': rec, 'f1': f1}


def word_error_rates(prediction: str, reference: str) -> dict[str, float]:
  """WER, SUB, INS and DEL rates (per reference word) from jiwer's alignment.

  An empty reference: WER = INS = number of predicted words (0 if both are
  empty), SUB = DEL = 0.
  """
  ref, hyp = reference.split(), prediction.split()
  if not ref:
    n = float(len(hyp))
    return {'wer': n, 'sub': 0.0, 'ins': n, 'del': 0.0}
  if not hyp:
    return {'wer': 1.0, 'sub': 0.0, 'ins': 0.0, 'del': 1.0}
  out = jiwer.process_words(' '.join(ref), ' '.join(hyp))
  n = len(ref)
  s, d, i = out.substitutions, out.deletions, out.insertions
  return {'wer': (s + d + i) / n, 'sub': s / n, 'ins': i / n, 'del': d / n}


def _units(prediction: str, reference: str, max_chars: int):
  if max(len(prediction), len(reference)) <= max_chars:
    return prediction, reference
  return prediction.splitlines(), reference.splitlines()


def levenshtein(prediction: str, reference: str, max_chars=MAX_CHARS) -> float:
  """Normalised Levenshtein distance in [0, 1] (0 = equal)."""
  a, b = _units(prediction, reference, max_chars)
  return float(Levenshtein.normalized_distance(a, b))


def damerau(prediction: str, reference: str, max_chars=MAX_CHARS) -> float:
  """Normalised (unrestricted) Damerau-Levenshtein distance in [0, 1]."""
  a, b = _units(prediction, reference, max_chars)
  return float(DamerauLevenshtein.normalized_distance(a, b))


def jaro_winkler(prediction: str, reference: str, max_chars=MAX_CHARS) -> float:
  """Jaro-Winkler similarity in [0, 1] (1 = equal)."""
  a, b = _units(prediction, reference, max_chars)
  return float(JaroWinkler.similarity(a, b))


def markdown_scores(
  prediction: str, reference: str, max_chars: int = MAX_CHARS
) -> dict[str, float]:
  """All of `METRIC_NAMES` for one pair."""
  out = {'rouge_l': rouge_l(prediction, reference)['f1']}
  out.update(word_error_rates(prediction, reference))
  out['levenshtein'] = levenshtein(prediction, reference, max_chars)
  out['damerau'] = damerau(prediction, reference, max_chars)
  out['jaro_winkler'] = jaro_winkler(prediction, reference, max_chars)
  return out
