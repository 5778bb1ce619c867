"""Hugging Face chat templates (`tokenizer_config.json`'s `chat_template`).

`render(template, messages)` turns `[{"role", "content"}, ...]` into the
text a chat model was trained on, as `transformers`'
`apply_chat_template(..., tokenize=False)` does: the Jinja template runs in
a sandbox with `trim_blocks` and `lstrip_blocks`, `raise_exception` raises
`ValueError`, and the special tokens are passed in by name (`bos_token`,
`eos_token`, ...). Only what a template needs to render plain chats is
provided (no tools, documents or generation masks).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jinja2
from jinja2 import sandbox


def _raise(message: str):
  raise ValueError(f'chat template: {message}')


@functools.lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
  env = sandbox.ImmutableSandboxedEnvironment(
    trim_blocks=True, lstrip_blocks=True
  )
  env.globals['raise_exception'] = _raise
  try:
    return env.from_string(template)
  except jinja2.TemplateSyntaxError as e:
    raise ValueError(
      f'chat template: Jinja syntax error at line {e.lineno}: {e.message}'
    ) from e


def render(
  template: str,
  messages: Sequence[dict],
  add_generation_prompt: bool = True,
  **special_tokens: str,
) -> str:
  """Renders `messages` with a Hugging Face chat template.

  Args:
    template: the Jinja source (`tokenizer_config.json`'s `chat_template`).
    messages: `{"role": str, "content": str}` dicts.
    add_generation_prompt: end with the assistant cue (for a prompt).
    **special_tokens: e.g. `bos_token='<s>'`, visible to the template.

  Returns:
    The rendered text.

  Raises:
    ValueError: a template syntax error, or the template's own
      `raise_exception` (e.g. roles out of order).
  """
  return _compile(template).render(
    messages=list(messages),
    add_generation_prompt=add_generation_prompt,
    **special_tokens,
  )
