"""Answer scoring for QA rewards: SQuAD-normalised exact match and token F1.

Normalisation follows the SQuAD v1.1 evaluation script (and Search-R1's
`qa_em.py`): lower-case, drop punctuation, drop the articles a/an/the,
collapse whitespace. Scores are the max over a question's golden aliases.

`exact_match_reward` follows TRL's reward protocol
`reward(prompts, completions, **columns) -> list[float]`, reading the
answer from the last `<answer>...</answer>` of each completion.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence

_ARTICLES = re.compile(r'\b(a|an|the)\b')
_PUNCT = set(string.punctuation)
_ANSWER = re.compile(r'<answer>(.*?)</answer>', re.DOTALL)


def normalize_answer(text: str) -> str:
  """SQuAD normalisation: 'The  Eiffel-Tower!' -> 'eiffeltower'."""
  text = ''.join(ch for ch in text.lower() if ch not in _PUNCT)
  text = _ARTICLES.sub(' ', text)
  return ' '.join(text.split())


def _check_golden(golden: Sequence[str]) -> None:
  if isinstance(golden, str) or not golden:
    raise ValueError(
      f'golden answers must be a non-empty list of strings, got {golden!r}'
    )


def exact_match(prediction: str, golden: Sequence[str]) -> float:
  """1.0 if the normalised prediction equals a normalised golden answer."""
  _check_golden(golden)
  p = normalize_answer(prediction)
  return float(any(p == normalize_answer(g) for g in golden))


def token_f1(prediction: str, golden: Sequence[str]) -> float:
  """Max over aliases of the bag-of-words F1 of normalised tokens."""
  _check_golden(golden)
  pred = normalize_answer(prediction).split()
  best = 0.0
  for g in golden:
    gold = normalize_answer(g).split()
    common = collections.Counter(pred) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
      continue
    precision, recall = same / len(pred), same / len(gold)
    best = max(best, 2 * precision * recall / (precision + recall))
  return best


def extract_answer(completion: str) -> str | None:
  """Content of the last `<answer>...</answer>`, or None if there is none."""
  found = _ANSWER.findall(completion)
  return found[-1].strip() if found else None


def exact_match_reward(
  prompts: Sequence[str],
  completions: Sequence[str],
  golden_answers: Sequence[Sequence[str]],
  **unused,
) -> list[float]:
  """Per completion: EM of its `<answer>` against the golden aliases.

  A completion without an `<answer>` tag scores 0.

  Args:
    prompts: `N` prompts (unused; part of the protocol).
    completions: `N` decoded completions.
    golden_answers: `N` lists of accepted answers.
    **unused: other dataset columns.

  Returns:
    `N` floats in {0, 1}.
  """
  del prompts, unused
  if len(completions) != len(golden_answers):
    raise ValueError(
      f'{len(completions)} completions but {len(golden_answers)} golden_answers'
    )
  out = []
  for c, g in zip(completions, golden_answers, strict=True):
    a = extract_answer(c)
    out.append(0.0 if a is None else exact_match(a, g))
  return out
