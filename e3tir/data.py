"""Tool-Star-style data files: JSONL and parquet, read and written.

One record per question, with Tool-Star's RL fields
(`Tool_Star_RL/mix_grpo/grpo_mix_train_shuffle.parquet`):

  {"question": "...", "ability": "math" | "qa", "data_source": "grpo_mix",
   "reward_model": {"ground_truth": "84", "style": "rule"},
   "extra_info": {"index": 0}}

plus an optional `expert_trajectory` (the response text of an expert
solution with its tool calls and observations, as in Tool-Star's SFT data)
that E3-TIR's warm-up reads. `ground_truth` may be a string or a list of
accepted strings. Errors name the file, the line (JSONL) or row (parquet),
and the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import NamedTuple

from common.metrics import jsonio
from e3tir import trajectory

ABILITIES = ('math', 'qa')


class Record(NamedTuple):
  """One question.

  Attributes:
    question: the question text.
    answers: accepted answers.
    ability: `'math'` or `'qa'`.
    data_source: Tool-Star's `data_source`.
    expert_trajectory: the expert response ('' if none).
  """

  question: str
  answers: tuple[str, ...]
  ability: str
  data_source: str = 'grpo_mix'
  expert_trajectory: str = ''


def to_row(r: Record, index: int) -> dict:
  """The Tool-Star dict of a record."""
  row = {
    'question': r.question,
    'ability': r.ability,
    'data_source': r.data_source,
    'reward_model': {
      'ground_truth': r.answers[0] if len(r.answers) == 1 else list(r.answers),
      'style': 'rule',
    },
    'extra_info': {'index': index},
  }
  if r.expert_trajectory:
    row['expert_trajectory'] = r.expert_trajectory
  return row


def from_row(row, where: str, max_calls: int | None = None) -> Record:
  """A record from a Tool-Star dict; `where` ('file:line') names errors."""
  if not isinstance(row, dict):
    raise ValueError(f'{where}: expected an object, got {type(row).__name__}')
  q = row.get('question')
  if not isinstance(q, str) or not q.strip():
    raise ValueError(f'{where}: field "question" must be a non-empty string')
  rm = row.get('reward_model')
  if not isinstance(rm, dict) or 'ground_truth' not in rm:
    raise ValueError(
      f'{where}: field "reward_model.ground_truth" is missing (need '
      '{"reward_model": {"ground_truth": ...}})'
    )
  gt = rm['ground_truth']
  if hasattr(gt, 'tolist'):
    gt = gt.tolist()
  answers = [gt] if isinstance(gt, str) else gt
  if (
    not isinstance(answers, list | tuple)
    or not answers
    or not all(isinstance(a, str) and a.strip() for a in answers)
  ):
    raise ValueError(
      f'{where}: field "reward_model.ground_truth" must be a non-empty '
      f'string or list of strings, got {gt!r}'
    )
  ability = row.get('ability', 'qa')
  if ability not in ABILITIES:
    raise ValueError(
      f'{where}: field "ability" is {ability!r}; allowed: {ABILITIES}'
    )
  source = row.get('data_source', 'grpo_mix')
  if not isinstance(source, str):
    raise ValueError(f'{where}: field "data_source" must be a string')
  expert = row.get('expert_trajectory') or ''
  if not isinstance(expert, str):
    raise ValueError(f'{where}: field "expert_trajectory" must be a string')
  if expert:
    trajectory.check_trajectory(
      expert, f'{where}: field "expert_trajectory"', max_calls
    )
  return Record(q.strip(), tuple(answers), ability, source, expert)


def write_jsonl(path: str | os.PathLike, records: Sequence[Record]) -> str:
  """Writes records as Tool-Star JSONL; returns the path."""
  path = os.fspath(path)
  with open(path, 'w', encoding='utf-8') as f:
    for i, r in enumerate(records):
      f.write(json.dumps(to_row(r, i)) + '\n')
  return path


def read_jsonl(
  path: str | os.PathLike, max_calls: int | None = None
) -> list[Record]:
  """Reads Tool-Star JSONL (errors: `<file>:<line>: field ...`)."""
  return [
    from_row(obj, f'{path}:{n}', max_calls)
    for n, obj in jsonio.iter_jsonl_objects(
      path, kind='Tool-Star JSONL', allow_empty=False
    )
  ]


def write_parquet(path: str | os.PathLike, records: Sequence[Record]) -> str:
  """Writes records as a Tool-Star parquet file (pyarrow)."""
  import pyarrow as pa  # noqa: PLC0415 (optional heavy import)
  import pyarrow.parquet as pq  # noqa: PLC0415

  rows = [to_row(r, i) for i, r in enumerate(records)]
  for row in rows:  # one column type: lists of answers as JSON strings
    gt = row['reward_model']['ground_truth']
    if not isinstance(gt, str):
      row['reward_model']['ground_truth'] = json.dumps(gt)
    row.setdefault('expert_trajectory', '')
  pq.write_table(pa.Table.from_pylist(rows), os.fspath(path))
  return os.fspath(path)


def read_parquet(
  path: str | os.PathLike, max_calls: int | None = None
) -> list[Record]:
  """Reads a Tool-Star parquet file (errors: `<file>: row <i>: field ...`)."""
  import pyarrow.parquet as pq  # noqa: PLC0415

  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no such Tool-Star parquet file: {path}')
  rows = pq.read_table(path).to_pylist()
  if not rows:
    raise ValueError(f'{path}: no records')
  out = []
  for i, row in enumerate(rows):
    rm = row.get('reward_model')
    if isinstance(rm, dict) and isinstance(rm.get('ground_truth'), str):
      gt = rm['ground_truth']
      if gt.startswith('['):
        try:
          rm = {**rm, 'ground_truth': json.loads(gt)}
        except json.JSONDecodeError:
          pass
      row = {**row, 'reward_model': rm}
    out.append(from_row(row, f'{path}: row {i}', max_calls))
  return out


def read(path: str | os.PathLike, max_calls: int | None = None):
  """`read_jsonl` or `read_parquet` by the file's extension."""
  p = os.fspath(path)
  if p.endswith('.parquet'):
    return read_parquet(p, max_calls)
  if p.endswith(('.jsonl', '.json')):
    return read_jsonl(p, max_calls)
  raise ValueError(f'{p}: unknown data file type; use .jsonl or .parquet')
