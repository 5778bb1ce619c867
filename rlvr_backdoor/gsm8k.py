"""GSM8K-style JSONL for the verifiable tasks: read and write.

One JSON object per line, `{"question": str, "answer": str}`, where the
answer ends with the final `#### N` (GSM8K's format; the reasoning before
it is free text). Readers return `(question, N)` records; every error names
the file, the line and the field.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from typing import NamedTuple

from common import metrics
from common.synthetic import arithmetic

_FINAL = re.compile(r'####\s*(-?[\d,]+(?:\.\d+)?)\s*$')


class GSM8KFormatError(ValueError):
  """A JSONL record is malformed (names file, line and field)."""


class Record(NamedTuple):
  """One task: the question text, its numeric answer, the full answer."""

  question: str
  answer: float | int
  solution: str


def final_answer(text: str) -> int | float | None:
  """The number after the final `#### ` (commas dropped), or None."""
  m = _FINAL.search(text.strip())
  if not m:
    return None
  num = m.group(1).replace(',', '')
  return float(num) if '.' in num else int(num)


def write_jsonl(records: Iterable[Record | dict], path) -> str:
  """Writes `{"question", "answer"}` lines; returns the path."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    for r in records:
      if isinstance(r, Record):
        row = {'question': r.question, 'answer': r.solution}
      else:
        row = {'question': r['question'], 'answer': r['answer']}
      f.write(json.dumps(row, ensure_ascii=False) + '\n')
  return str(path)


def from_problems(problems: Iterable[arithmetic.ArithmeticProblem]):
  """Arithmetic problems as GSM8K records (steps, then `#### N`)."""
  out = []
  for p in problems:
    steps = ' '.join(f'{e} = {r}.' for e, r in p.steps)
    out.append(Record(p.question, p.answer, f'{steps}\n#### {p.answer}'))
  return out


def read_jsonl(path) -> list[Record]:
  """Reads a GSM8K-style file.

  Raises:
    FileNotFoundError: no such file.
    GSM8KFormatError: invalid JSON, a non-object line, a missing or
      non-string `question`/`answer`, or an answer without a final
      `#### N`; the message is `<path>:<line>: field '<name>': ...`.
  """
  out = []
  for n, row in metrics.iter_jsonl_objects(
    path, kind='GSM8K JSONL', error=GSM8KFormatError
  ):
    for field in ('question', 'answer'):
      if field not in row:
        raise GSM8KFormatError(f"{path}:{n}: field '{field}' is missing")
      if not isinstance(row[field], str) or not row[field].strip():
        raise GSM8KFormatError(
          f"{path}:{n}: field '{field}' must be a non-empty string, got "
          f'{row[field]!r}'
        )
    value = final_answer(row['answer'])
    if value is None:
      raise GSM8KFormatError(
        f"{path}:{n}: field 'answer' has no final '#### N' (got "
        f'{row["answer"][-40:]!r})'
      )
    out.append(Record(row['question'], value, row['answer']))
  return out


def to_problems(records: Iterable[Record], split: str = 'train'):
  """Records as `ArithmeticProblem`s (integer answers only), so that the
  world's prompts and verifier take them unchanged."""
  out = []
  for i, r in enumerate(records):
    if not float(r.answer).is_integer():
      raise GSM8KFormatError(
        f"record {i}: field 'answer' = {r.answer}; the verifier's world "
        'takes integer answers'
      )
    out.append(
      arithmetic.ArithmeticProblem(
        f'{split}-{i:05d}', r.question, '', (), int(r.answer), 0, split
      )
    )
  return out
