"""Readers and writers for Search-R1 / FlashRAG JSONL files.

Corpus lines are `{"id": str, "contents": '"Title"\\ntext'}` (the format of
Search-R1's `example/corpus.jsonl` and FlashRAG's `wiki-18.jsonl`).
Question lines follow FlashRAG datasets, which Search-R1's data scripts
read: `{"id", "question", "golden_answers": [str], "metadata": {...}}`.
The knowledge world puts `hops`, `decomposition`, `split`, `relations` and
`entities` under `metadata`; `read_questions_jsonl` lifts them back.
"""

from __future__ import annotations

import json
import os

from common.metrics import jsonio as metrics_jsonio
from common.synthetic import knowledge_world

_META_KEYS = ('hops', 'decomposition', 'split', 'relations', 'entities')


def _write_lines(path, rows) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + '\n')
  return str(path)


def _read_lines(path):
  return metrics_jsonio.iter_jsonl_objects(path)


def write_corpus_jsonl(documents, path) -> str:
  """Writes `{"id", "contents"}` documents, one per line; returns path."""
  rows = []
  for i, d in enumerate(documents):
    if not {'id', 'contents'} <= set(d):
      raise ValueError(f'documents[{i}] needs keys id and contents: {d}')
    rows.append({'id': str(d['id']), 'contents': d['contents']})
  return _write_lines(path, rows)


def read_corpus_jsonl(path) -> list[dict]:
  """Reads a corpus file; each line needs `id` and `contents`.

  FlashRAG-style `{"title", "text"}` lines are also accepted and turned
  into `contents = '"title"\\ntext'`.
  """
  out = []
  for n, row in _read_lines(path):
    if 'contents' not in row and {'title', 'text'} <= set(row):
      row = dict(row, contents=f'"{row["title"]}"\n{row["text"]}')
    if 'id' not in row or 'contents' not in row:
      raise ValueError(
        f'{path}:{n}: corpus line needs "id" and "contents" (or "title" '
        f'and "text"); got keys {sorted(row)}'
      )
    out.append({'id': str(row['id']), 'contents': row['contents']})
  return out


def write_questions_jsonl(questions, path) -> str:
  """Writes questions in the FlashRAG / Search-R1 question format."""
  rows = []
  for i, q in enumerate(questions):
    for key in ('id', 'question', 'golden_answers'):
      if key not in q:
        raise ValueError(f'questions[{i}] has no {key!r}')
    meta = dict(q.get('metadata', {}))
    meta.update({k: q[k] for k in _META_KEYS if k in q})
    rows.append(
      {
        'id': str(q['id']),
        'question': q['question'],
        'golden_answers': list(q['golden_answers']),
        'metadata': meta,
      }
    )
  return _write_lines(path, rows)


def read_questions_jsonl(path) -> list[dict]:
  """Reads a question file (needs `question` and `golden_answers`).

  Missing ids become the line number; knowledge-world metadata keys are
  lifted to the top level, other metadata stays under `metadata`.
  """
  out = []
  for n, row in _read_lines(path):
    if 'question' not in row or 'golden_answers' not in row:
      raise ValueError(
        f'{path}:{n}: question line needs "question" and "golden_answers"; '
        f'got keys {sorted(row)}'
      )
    answers = row['golden_answers']
    if isinstance(answers, str):
      answers = [answers]
    if not isinstance(answers, list) or not all(
      isinstance(a, str) for a in answers
    ):
      raise ValueError(f'{path}:{n}: golden_answers must be a list of str')
    q = {
      'id': str(row.get('id', n - 1)),
      'question': row['question'],
      'golden_answers': answers,
    }
    meta = dict(row.get('metadata') or {})
    for k in _META_KEYS:
      if k in meta:
        q[k] = meta.pop(k)
    if meta:
      q['metadata'] = meta
    out.append(q)
  return out


def write_world_jsonl(world, directory) -> dict[str, str]:
  """Writes `corpus.jsonl` and `<split>.jsonl` for every split.

  Args:
    world: a `KnowledgeWorld`.
    directory: output directory (created).

  Returns:
    `{"corpus": path, "train": path, ...}`.
  """
  paths = {
    'corpus': write_corpus_jsonl(
      world.documents, os.path.join(directory, 'corpus.jsonl')
    )
  }
  for split in knowledge_world.SPLITS:
    paths[split] = write_questions_jsonl(
      world.split(split), os.path.join(directory, f'{split}.jsonl')
    )
  return paths
