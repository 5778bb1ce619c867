"""Prompts of the three pipeline roles, and their parser for rule backends.

Draft: the model card's prompt (`prompt.instruction_prompt`). Refine: the
HTML and the draft, asking for a cleaned version. Critique: the HTML and an
output, asking for `PASS`/`FAIL` with an explanation. `parse` reads the
fenced parts back (`html`, `schema`, `draft`, `output`), so rule backends
see exactly what an LM backend would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from readerlm import prompt as prompt_lib

REFINE_INSTRUCTION = (
  'Refine the draft below into a clean version of the main content of the '
  'HTML: remove navigation, cookie banners, ads, related links and '
  'footers, remove duplicates, and normalise headings, lists, tables and '
  'code fences.'
)
CRITIQUE_INSTRUCTION = (
  'Does the output below meet the instruction for the given HTML? Answer '
  'PASS or FAIL, then explain.'
)


def _fence(tag: str, text: str) -> str:
  return f'```{tag}\n{text}\n```'


def draft_prompt(html: str, schema: Mapping | None = None) -> str:
  return prompt_lib.instruction_prompt(html, schema=schema)


def _schema_part(schema) -> str:
  if schema is None:
    return ''
  return '\nThe JSON schema is as follows:' + _fence(
    'json', prompt_lib.schema_text(schema)
  )


def refine_prompt(html: str, draft: str, schema: Mapping | None = None) -> str:
  tag = 'json' if schema is not None else 'markdown'
  return (
    f'{REFINE_INSTRUCTION}\n{_fence("html", html)}{_schema_part(schema)}\n'
    f'Draft:\n{_fence(tag + "-draft", draft)}'
  )


def critique_prompt(
  html: str, output: str, schema: Mapping | None = None
) -> str:
  tag = 'json' if schema is not None else 'markdown'
  return (
    f'{CRITIQUE_INSTRUCTION}\n{_fence("html", html)}{_schema_part(schema)}\n'
    f'Output:\n{_fence(tag + "-output", output)}'
  )


def _between(text: str, tag: str) -> str | None:
  start = text.find(f'```{tag}\n')
  if start < 0:
    return None
  start += len(tag) + 4
  end = text.rfind('\n```', start)
  return text[start:end] if end >= 0 else text[start:]


def parse(prompt: str) -> dict[str, Any]:
  """`{'html', 'schema', 'draft', 'output'}` found in a role prompt."""
  out: dict[str, Any] = {}
  m = re.search(r'```html\n(.*?)\n```(?:\n|$|The JSON)', prompt, re.DOTALL)
  out['html'] = m.group(1) if m else ''
  m = re.search(
    r'The JSON schema is as follows:```json\n(.*?)\n```', prompt, re.DOTALL
  )
  out['schema'] = json.loads(m.group(1)) if m else None
  for key, tag in (('draft', '-draft'), ('output', '-output')):
    for kind in ('markdown', 'json'):
      found = _between(prompt, kind + tag)
      if found is not None:
        out[key] = found
  return out
