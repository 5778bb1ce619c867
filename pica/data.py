"""Search-R1 / FlashRAG question and corpus files for the search agent.

Question lines: `{"id"?, "question": str, "golden_answers": [str] | str,
"metadata"?: {...}}`, optionally with a golden `decomposition` (top level
or under `metadata`): a list of hops `{"query": str, "answer": str,
"doc_id"?: str}`, which pivot annotation (`pica.pivots`) needs. Corpus
lines: `{"id", "contents": '"Title"\\ntext'}` (or `{"id", "title",
"text"}`). The line-level parsing is `common.synthetic.jsonl_io`'s; this
module adds the checks the search agent relies on, with errors naming the
file, line and field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from common.synthetic import jsonl_io


def _where(path, i) -> str:
  return f'{path}: question {i}'


def check_decomposition(decomposition, where: str = 'decomposition'):
  """Validates a golden decomposition; returns it as a list of dicts.

  Raises:
    ValueError: naming the hop and field that is missing or malformed.
  """
  if not isinstance(decomposition, list) or not decomposition:
    raise ValueError(f'{where}: decomposition must be a non-empty list')
  for h, hop in enumerate(decomposition):
    if not isinstance(hop, dict):
      raise ValueError(f'{where}: decomposition[{h}] must be a dict')
    for key in ('query', 'answer'):
      v = hop.get(key)
      if not isinstance(v, str) or not v.strip():
        raise ValueError(
          f'{where}: decomposition[{h}] needs a non-empty str {key!r} '
          f'(keys: query, answer, optional doc_id); got {v!r}'
        )
    if 'doc_id' in hop and not isinstance(hop['doc_id'], str):
      raise ValueError(f'{where}: decomposition[{h}]["doc_id"] must be a str')
  return decomposition


def _top_level_decompositions(path) -> list:
  """Per non-blank line, a top-level `decomposition` value or None (the
  FlashRAG reader only lifts the one under `metadata`)."""
  out = []
  with open(path, encoding='utf-8') as f:
    for line in f:
      if line.strip():
        out.append(json.loads(line).get('decomposition'))
  return out


def load_questions(
  path: str | os.PathLike, require_decomposition: bool = False
) -> list[dict]:
  """Reads a Search-R1 / FlashRAG question JSONL file.

  Args:
    path: the `.jsonl` file.
    require_decomposition: raise if a question has no golden
      decomposition (pivot annotation needs one).

  Returns:
    Question dicts with `id`, `question`, `golden_answers` and, when
    present, `decomposition` (and the knowledge world's metadata keys).

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: a line lacks `question`/`golden_answers`, has an empty
      question or answer list, or a malformed decomposition.
  """
  path = os.fspath(path)
  questions = jsonl_io.read_questions_jsonl(path)
  if not questions:
    raise ValueError(f'{path}: no questions in file')
  top_level = _top_level_decompositions(path)
  for i, q in enumerate(questions):
    if 'decomposition' not in q and top_level[i] is not None:
      q['decomposition'] = top_level[i]
    if not isinstance(q['question'], str) or not q['question'].strip():
      raise ValueError(f'{_where(path, i)}: "question" must be a non-empty str')
    if not q['golden_answers'] or not all(
      a.strip() for a in q['golden_answers']
    ):
      raise ValueError(
        f'{_where(path, i)}: "golden_answers" must be non-empty strings'
      )
    dec = q.get('decomposition')
    if dec is None and 'metadata' in q:
      dec = q['metadata'].get('decomposition')
      if dec is not None:
        q['decomposition'] = dec
    if dec is not None:
      check_decomposition(dec, _where(path, i))
    elif require_decomposition:
      raise ValueError(
        f'{_where(path, i)} (id {q["id"]!r}) has no golden "decomposition"'
      )
  return questions


def load_corpus(path: str | os.PathLike) -> list[dict]:
  """Reads a `{"id", "contents"}` corpus JSONL file (non-empty, unique ids).

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: a malformed line, an empty corpus or a duplicate id.
  """
  path = os.fspath(path)
  docs = jsonl_io.read_corpus_jsonl(path)
  if not docs:
    raise ValueError(f'{path}: corpus has no documents')
  seen = set()
  for d in docs:
    if d['id'] in seen:
      raise ValueError(f'{path}: duplicate document id {d["id"]!r}')
    seen.add(d['id'])
  return docs


def load_datasets(paths: Sequence[str | os.PathLike]) -> dict[str, list]:
  """`{file stem: questions}` for several question files (e.g. the seven
  FlashRAG test sets of the paper config)."""
  out = {}
  for p in paths:
    name = os.path.splitext(os.path.basename(os.fspath(p)))[0]
    if name in out:
      raise ValueError(f'two question files share the name {name!r}')
    out[name] = load_questions(p)
  return out
