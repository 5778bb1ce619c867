"""Input preparation as the ReaderLM-v2 model card does it.

`clean_html` applies the card's regex rules in its order: drop `<script>`,
`<style>`, `<meta>`, HTML comments and `<link>` tags; optionally empty SVG
bodies (`clean_svg`) and replace base64 `<img>`s (`clean_base64`).
`instruction_prompt` builds the user message (instruction, the HTML in an
html fence, and for JSON extraction the schema in a json fence) and
`chat_prompt` wraps it in Qwen2's ChatML turn format, as
`tokenizer.apply_chat_template(..., add_generation_prompt=True)` renders it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_FLAGS = re.IGNORECASE | re.MULTILINE | re.DOTALL
SCRIPT_PATTERN = r'<[ ]*script.*?\/[ ]*script[ ]*>'
STYLE_PATTERN = r'<[ ]*style.*?\/[ ]*style[ ]*>'
META_PATTERN = r'<[ ]*meta.*?>'
COMMENT_PATTERN = r'<[ ]*!--.*?--[ ]*>'
LINK_PATTERN = r'<[ ]*link.*?>'
BASE64_IMG_PATTERN = r'<img[^>]+src="data:image/[^;]+;base64,[^"]+"[^>]*>'
SVG_PATTERN = r'(<svg[^>]*>)(.*?)(<\/svg>)'

MARKDOWN_INSTRUCTION = (
  'Extract the main content from the given HTML and convert it to Markdown '
  'format.'
)
JSON_INSTRUCTION = (
  'Extract the specified information from a list of news threads and '
  'present it in a structured JSON format.'
)
SVG_PLACEHOLDER = 'this is a placeholder'


def replace_svg(html: str, new_content: str = SVG_PLACEHOLDER) -> str:
  """Empties every `<svg>` body (keeps the tags)."""
  return re.sub(
    SVG_PATTERN, lambda m: f'{m.group(1)}{new_content}{m.group(3)}', html,
    flags=re.DOTALL,
  )  # fmt: skip


def replace_base64_images(html: str, new_src: str = '#') -> str:
  """Replaces `<img src="data:image/...;base64,...">` with `<img src="#"/>`."""
  return re.sub(BASE64_IMG_PATTERN, f'<img src="{new_src}"/>', html)


def clean_html(
  html: str, clean_svg: bool = False, clean_base64: bool = False
) -> str:
  """The model card's `clean_html`.

  Args:
    html: page source (str; decode bytes with `decode_html` first).
    clean_svg: empty SVG bodies.
    clean_base64: replace base64-embedded images.

  Returns:
    The cleaned HTML.
  """
  if not isinstance(html, str):
    raise TypeError(
      f'clean_html needs str, got {type(html).__name__}; decode bytes with '
      'readerlm.decode_html first.'
    )
  for pattern in (
    SCRIPT_PATTERN, STYLE_PATTERN, META_PATTERN, COMMENT_PATTERN, LINK_PATTERN
  ):  # fmt: skip
    html = re.sub(pattern, '', html, flags=_FLAGS)
  if clean_svg:
    html = replace_svg(html)
  if clean_base64:
    html = replace_base64_images(html)
  return html


_CHARSET_RE = re.compile(rb'charset=["\']?([A-Za-z0-9_\-]+)', re.IGNORECASE)


def decode_html(data: bytes | str) -> str:
  """Bytes of a page -> str: BOM, then `<meta charset>`, then UTF-8, then
  cp1252 with replacement (never raises on undecodable bytes; NUL bytes
  are dropped)."""
  if isinstance(data, str):
    return data.replace('\x00', '')
  if data.startswith(b'\xef\xbb\xbf'):
    return data[3:].decode('utf-8', 'replace').replace('\x00', '')
  if data.startswith((b'\xff\xfe', b'\xfe\xff')):
    return data.decode('utf-16', 'replace').replace('\x00', '')
  m = _CHARSET_RE.search(data[:4096])
  encodings = ([m.group(1).decode('ascii')] if m else []) + ['utf-8']
  for enc in encodings:
    try:
      return data.decode(enc).replace('\x00', '')
    except (LookupError, UnicodeDecodeError):
      continue
  return data.decode('cp1252', 'replace').replace('\x00', '')


def schema_text(schema: str | Mapping[str, Any]) -> str:
  """A schema as the prompt shows it: a string as given (the card passes
  the user's text through), a dict as compact one-line JSON."""
  if isinstance(schema, str):
    json.loads(schema)  # must be JSON
    return schema
  return json.dumps(schema)


def instruction_prompt(
  html: str,
  instruction: str | None = None,
  schema: str | Mapping[str, Any] | None = None,
) -> str:
  """The model card's `create_prompt` user message.

  Markdown: `{instruction}\\n```html\\n{html}\\n````. JSON (a schema is
  given): the JSON instruction, the fenced HTML, then `The JSON schema is
  as follows:` and the schema in a json fence.
  """
  if schema is not None:
    instruction = instruction or JSON_INSTRUCTION
    return (
      f'{instruction}\n```html\n{html}\n```\nThe JSON schema is as follows:'
      f'```json\n{schema_text(schema)}\n```'
    )
  instruction = instruction or MARKDOWN_INSTRUCTION
  return f'{instruction}\n```html\n{html}\n```'


def chat_prompt(user: str, system: str | None = None) -> str:
  """Qwen2 ChatML with the generation prompt (`<|im_start|>assistant\\n`).

  `system=None` renders no system turn (the ReaderLM-v2 card's messages
  have none; Qwen2.5-Instruct's own template would insert its default
  system prompt: pass it explicitly for that model).
  """
  parts = []
  if system is not None:
    parts.append(f'<|im_start|>system\n{system}<|im_end|>\n')
  parts.append(f'<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n')
  return ''.join(parts)


def strip_fences(text: str) -> str:
  """Removes one wrapping ```markdown / ```json fence from model output."""
  t = text.strip()
  m = re.match(r'^```[a-zA-Z]*\n(.*?)\n?```$', t, flags=re.DOTALL)
  return m.group(1) if m else t
