"""The Search-R1 tag protocol: actions, trajectory parsing, format checks.

A response is a sequence of steps: optional `<think> ... </think>`, then an
action, `<search> query </search>` (followed by the environment's
`<information> docs </information>`) or `<answer> text </answer>`, which
ends the episode. PiCA's environment may insert `<warning> ... </warning>`
blocks after an invalid action.

`parse_action` is the per-turn decision of Search-R1's rollout
(`search_r1/llm_agent/generation.py::postprocess_predictions`): the first
well-formed `<search>`/`<answer>` pair whose tag names match.
`parse_trajectory` parses a whole response; it never raises on policy
output: everything malformed is collected in `errors`, and `format_ok` is
False exactly when the episode earns the format penalty (PiCA's
`answer_last_check`: the text must end with one `<answer>...</answer>`
block; additionally every `<search>` must be closed with a non-empty query
and tags must not nest). `information_mask` finds the retrieved tokens of a
token sequence (the Search-R1 `info_mask`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import jax.numpy as jnp

TAGS = ('think', 'search', 'information', 'answer', 'warning')
_TAG_RE = re.compile(r'(</?(?:think|search|information|answer|warning)>)')
_ACTION_RE = re.compile(r'<(search|answer)>(.*?)</\1>', re.DOTALL)


class Action(NamedTuple):
  """One turn's action: kind in {'search', 'answer', 'invalid'}."""

  kind: str
  content: str


class Step(NamedTuple):
  """A parsed step of a trajectory.

  Attributes:
    kind: 'search' or 'answer'.
    content: the stripped query or answer text.
    think: the preceding thought ('' if none).
    information: the `<information>` text that followed a search ('' if
      none came, e.g. after the last allowed turn).
  """

  kind: str
  content: str
  think: str
  information: str


class ParsedTrajectory(NamedTuple):
  """`parse_trajectory`'s result.

  Attributes:
    steps: the well-formed steps, in order.
    answer: the final answer text, or None.
    format_ok: False iff the episode gets the format penalty.
    errors: human-readable reasons (empty iff `format_ok`).
  """

  steps: list[Step]
  answer: str | None
  format_ok: bool
  errors: list[str]

  @property
  def queries(self) -> list[str]:
    return [s.content for s in self.steps if s.kind == 'search']

  @property
  def num_searches(self) -> int:
    return len(self.queries)


def parse_action(text: str) -> Action:
  """The first well-formed `<search>`/`<answer>` pair of one turn's text.

  An empty query or answer is 'invalid' (the environment then warns
  instead of retrieving).
  """
  m = _ACTION_RE.search(text)
  if m is None:
    return Action('invalid', '')
  content = m.group(2).strip()
  if not content or _TAG_RE.search(content):
    return Action('invalid', content)
  return Action(m.group(1), content)


def parse_trajectory(response: str) -> ParsedTrajectory:
  """Parses a response (without the prompt) into steps; never raises.

  Args:
    response: the text the policy and environment produced.

  Returns:
    A `ParsedTrajectory`. Errors recorded: unclosed or unopened tags,
    nested tags, empty search queries or answers, a search after the
    answer, text after `</answer>`, no answer.
  """
  if not isinstance(response, str):
    return ParsedTrajectory([], None, False, ['response is not a str'])
  parts = _TAG_RE.split(response)
  steps, errors = [], []
  answer = None
  think = ''
  open_tag, buf = None, []
  after_answer = False
  for i, part in enumerate(parts):
    is_tag = i % 2 == 1
    if not is_tag:
      if open_tag is not None:
        buf.append(part)
      elif part.strip() and after_answer:
        errors.append('text after </answer>')
      continue
    closing = part.startswith('</')
    name = part.strip('</>')
    if not closing:
      if open_tag is not None:
        errors.append(f'<{name}> opened inside <{open_tag}>')
        continue
      if after_answer:
        errors.append(f'<{name}> after </answer>')
      open_tag, buf = name, []
      continue
    if open_tag != name:
      errors.append(
        f'</{name}> without an open <{name}>'
        + (f' (inside <{open_tag}>)' if open_tag else '')
      )
      continue
    text = ''.join(buf).strip()
    open_tag = None
    if name == 'think':
      think = text
    elif name == 'search':
      if not text:
        errors.append('empty <search> query')
      elif after_answer:
        pass  # already reported
      else:
        steps.append(Step('search', text, think, ''))
      think = ''
    elif name == 'information':
      if steps and steps[-1].kind == 'search' and not steps[-1].information:
        steps[-1] = steps[-1]._replace(information=text)
    elif name == 'answer':
      if not text:
        errors.append('empty <answer>')
      elif answer is not None:
        errors.append('more than one <answer>')
      else:
        answer = text
        steps.append(Step('answer', text, think, ''))
      after_answer = True
      think = ''
  if open_tag is not None:
    errors.append(f'unclosed <{open_tag}>')
  if answer is None and not any('<answer>' in e for e in errors):
    errors.append('no <answer>')
  return ParsedTrajectory(steps, answer, not errors, errors)


def information_mask(tokens, open_id: int, close_id: int):
  """Marks retrieved tokens: `<information>` ... `</information>` inclusive.

  Args:
    tokens: `[..., T]` int token ids.
    open_id: id of `<information>`.
    close_id: id of `</information>`.

  Returns:
    `[..., T]` bool, True on every token of an information block
    (including both tags; an unclosed block runs to the end). The policy
    loss mask is `response_mask & ~information_mask(...)`.
  """
  tokens = jnp.asarray(tokens)
  opens = jnp.cumsum(tokens == open_id, axis=-1)
  is_close = tokens == close_id
  closes_before = jnp.cumsum(is_close, axis=-1) - is_close
  return opens > closes_before
