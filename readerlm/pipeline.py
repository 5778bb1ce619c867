"""Draft -> Refine -> Critique over any backends, and the three datasets.

`synthesize(pages, draft, refine, critique, path, task)` runs the three
roles per page and appends one JSON line per page to `path` as soon as the
page is done (`{'id', 'task', 'prompt', 'draft', 'refined', 'passed',
'explanation', 'draft_passed', 'draft_explanation'}`, or `{'id', 'task',
'error'}` when a backend failed: the failure is recorded, the run goes on).
A rerun skips pages already in the file, so an interrupted run resumes and
nothing written is lost.

`datasets(records, seed)` builds:

* SFT-Filtered: `(prompt, refined)` for refined outputs that passed;
* SFT-Critique: `(critique prompt, verdict + explanation)`; verdicts on
  refined outputs and on drafts, subsampled (seeded) to negatives :
  positives = 1 : 2 where both exist;
* DPO: `(prompt, chosen = refined, rejected = draft)` where the refined
  output passed and differs from the draft.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

import numpy as np

from readerlm import backends as backends_lib
from readerlm import prompt as prompt_lib
from readerlm import roles

TASKS = ('markdown', 'json')


def _msg(text: str) -> list[dict]:
  return [{'role': 'user', 'content': text}]


def read_records(path: str | os.PathLike) -> list[dict]:
  """Records of a synthesis file (a torn last line is ignored)."""
  path = pathlib.Path(path)
  if not path.exists():
    return []
  out = []
  for line in path.read_text(encoding='utf-8').splitlines():
    try:
      out.append(json.loads(line))
    except json.JSONDecodeError:
      continue  # a line cut by a crash; the page is redone
  return out


def synthesize(
  pages: Sequence[dict],
  draft: backends_lib.Backend,
  refine: backends_lib.Backend,
  critique: backends_lib.Backend,
  path: str | os.PathLike,
  task: str = 'markdown',
  schema: dict | None = None,
) -> list[dict]:
  """Runs the pipeline over `pages` (`{'id', 'html'}`), appending to `path`.

  Returns:
    All records of `path` (earlier ones included), in file order.
  """
  if task not in TASKS:
    raise ValueError(f'task {task!r} not in {TASKS}')
  if task == 'json' and schema is None:
    raise ValueError("task='json' needs a schema")
  from readerlm import json_eval  # noqa: PLC0415

  if schema is not None:
    json_eval.check_schema(schema)
  schema = schema if task == 'json' else None
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  _drop_torn_tail(path)
  done = {(r['id'], r['task']) for r in read_records(path)}
  with path.open('a', encoding='utf-8') as f:
    for page in pages:
      if (page['id'], task) in done:
        continue
      rec = run_page(page, draft, refine, critique, task, schema)
      f.write(json.dumps(rec) + '\n')
      f.flush()
      done.add((page['id'], task))
  return read_records(path)


def _drop_torn_tail(path: pathlib.Path) -> None:
  """Cuts a last line that a crash left without its newline."""
  if not path.exists():
    return
  data = path.read_bytes()
  if data and not data.endswith(b'\n'):
    path.write_bytes(data[: data.rfind(b'\n') + 1])


def _verdict(text: str) -> tuple[bool, str]:
  t = text.strip()
  return t.upper().startswith('PASS'), t


def run_page(page, draft, refine, critique, task, schema) -> dict[str, Any]:
  """One page through the three roles; errors become an `error` record.

  Every role sees the page after `decode_html` (bytes are fine) and the
  model card's `clean_html` (SVG bodies and base64 images replaced), as
  the model does at inference.
  """
  html = prompt_lib.clean_html(
    prompt_lib.decode_html(page['html']), clean_svg=True, clean_base64=True
  )
  prompt = roles.draft_prompt(html, schema)
  try:
    d = draft.generate(_msg(prompt))
    r = refine.generate(_msg(roles.refine_prompt(html, d, schema)))
    ok, why = _verdict(
      critique.generate(_msg(roles.critique_prompt(html, r, schema)))
    )
    dok, dwhy = _verdict(
      critique.generate(_msg(roles.critique_prompt(html, d, schema)))
    )
  except Exception as e:  # noqa: BLE001 (any backend failure is recorded)
    return {'id': page['id'], 'task': task, 'error': f'{type(e).__name__}: {e}'}
  return {
    'id': page['id'], 'task': task, 'prompt': prompt, 'draft': d,
    'refined': r, 'passed': ok, 'explanation': why, 'draft_passed': dok,
    'draft_explanation': dwhy,
  }  # fmt: skip


def datasets(records: Iterable[dict], seed: int = 0) -> dict[str, list[dict]]:
  """SFT-Filtered, SFT-Critique (1:2) and DPO triplets (module docstring)."""
  records = [r for r in records if 'error' not in r]
  sft = [
    {'id': r['id'], 'task': r['task'], 'prompt': r['prompt'],
     'response': r['refined']}
    for r in records if r['passed']
  ]  # fmt: skip
  verdicts = []
  for r in records:
    for out, ok, why in (
      (r['refined'], r['passed'], r['explanation']),
      (r['draft'], r['draft_passed'], r['draft_explanation']),
    ):
      verdicts.append({
        'id': r['id'], 'task': r['task'], 'passed': ok,
        'prompt': r['prompt'] + '\nOutput:\n```output\n' + out + '\n```',
        'response': why,
      })  # fmt: skip
  pos = [v for v in verdicts if v['passed']]
  neg = [v for v in verdicts if not v['passed']]
  rng = np.random.default_rng([seed, 2])
  if pos and neg:
    n_neg = min(len(neg), len(pos) // 2) or 1
    n_pos = min(len(pos), 2 * n_neg)
    neg = [neg[i] for i in sorted(rng.choice(len(neg), n_neg, replace=False))]
    pos = [pos[i] for i in sorted(rng.choice(len(pos), n_pos, replace=False))]
  critique = pos + neg
  critique = [critique[i] for i in rng.permutation(len(critique))]
  dpo = [
    {'id': r['id'], 'task': r['task'], 'prompt': r['prompt'],
     'chosen': r['refined'], 'rejected': r['draft']}
    for r in records
    if r['passed'] and r['refined'].strip() != r['draft'].strip()
  ]  # fmt: skip
  return {'sft_filtered': sft, 'sft_critique': critique, 'dpo': dpo}


def write_datasets(data: dict[str, list[dict]], directory) -> dict[str, str]:
  """Each dataset as `<name>.jsonl` in `directory` (atomic replace)."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  out = {}
  for name, rows in data.items():
    tmp = directory / f'.{name}.jsonl.tmp'
    tmp.write_text(
      ''.join(json.dumps(r) + '\n' for r in rows), encoding='utf-8'
    )
    os.replace(tmp, directory / f'{name}.jsonl')
    out[name] = str(directory / f'{name}.jsonl')
  return out
