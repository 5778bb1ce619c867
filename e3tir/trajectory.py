"""Tool-integrated trajectories: format, parsing and the outcome reward.

A trajectory (the response after the prompt) interleaves the policy's text
with tool calls and their observations, as in Tool-Star with this
project's tags:

  <calc> 12 * 7 </calc> <result> 84 </result>
  <search> founder of Vel Corp </search> <information> Doc 1(...) ...
  </information>
  <answer> 84 </answer>

`check_trajectory` validates an *expert* trajectory (configuration: a clear
`ValueError` naming where); `score` grades a *policy* output and never
raises (a malformed output gets `format_penalty`, Tool-Star's -1):

* format: every call tag closed and followed by its observation block,
  no stray or nested tags, exactly one `<answer> ... </answer>` and nothing
  after it, at most `max_calls` calls;
* correctness: arithmetic answers by exact number, knowledge answers by
  exact match or token F1 (`common.rl.qa_rewards`, Tool-Star's F1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from common.rl import qa_rewards

CALL_TAGS = {'calc': 'result', 'search': 'information'}
OBSERVATION_TAGS = ('result', 'information', 'warning')
_TAG_RE = re.compile(r'<(/?)(\w+)>')
_KNOWN = set(CALL_TAGS) | set(OBSERVATION_TAGS) | {'answer', 'think'}


class Parsed(NamedTuple):
  """A parsed trajectory.

  Attributes:
    ok: the format is valid.
    error: why not ('' when ok).
    calls: `(tag, content)` of each call in order.
    answer: the answer text, or None.
  """

  ok: bool
  error: str
  calls: tuple[tuple[str, str], ...]
  answer: str | None


def parse(text: str, max_calls: int | None = None) -> Parsed:
  """Parses `text` against the format (module docstring); never raises."""
  if not isinstance(text, str):
    return Parsed(False, f'not a string: {type(text).__name__}', (), None)
  calls: list[tuple[str, str]] = []
  answer = None
  open_tag, open_at = None, 0
  expect_obs = None  # the observation tag a call must be followed by
  for m in _TAG_RE.finditer(text):
    closing, tag = m.group(1) == '/', m.group(2)
    if tag not in _KNOWN:
      continue
    if answer is not None:
      return Parsed(False, f'<{m.group(1)}{tag}> after the answer', (), None)
    if not closing:
      if open_tag is not None:
        return Parsed(False, f'<{tag}> inside <{open_tag}>', (), None)
      if expect_obs is not None and tag != expect_obs:
        return Parsed(False, f'call not followed by <{expect_obs}>', (), None)
      if expect_obs is None and tag in OBSERVATION_TAGS:
        return Parsed(False, f'<{tag}> without a tool call', (), None)
      open_tag, open_at = tag, m.end()
      continue
    if tag != open_tag:
      return Parsed(False, f'</{tag}> does not close <{open_tag}>', (), None)
    content = text[open_at : m.start()].strip()
    open_tag = None
    if tag in CALL_TAGS:
      calls.append((tag, content))
      expect_obs = CALL_TAGS[tag]
    elif tag in OBSERVATION_TAGS:
      expect_obs = None
    elif tag == 'answer':
      answer = content
  if open_tag is not None:
    return Parsed(False, f'unclosed <{open_tag}>', tuple(calls), None)
  if expect_obs is not None:
    return Parsed(False, f'call without <{expect_obs}>', tuple(calls), None)
  if answer is None:
    return Parsed(False, 'no <answer>', tuple(calls), None)
  if max_calls is not None and len(calls) > max_calls:
    return Parsed(
      False, f'{len(calls)} tool calls > {max_calls}', tuple(calls), answer
    )
  return Parsed(True, '', tuple(calls), answer)


def check_trajectory(text: str, where: str, max_calls: int | None = None):
  """Raises `ValueError` naming `where` if an expert trajectory is malformed.

  Returns:
    The `Parsed` trajectory.
  """
  p = parse(text, max_calls)
  if not p.ok:
    raise ValueError(f'{where}: malformed expert trajectory: {p.error}')
  return p


REWARDS = ('em', 'f1')


def correctness(answer: str, golden: Sequence[str], kind: str, reward: str):
  """1/0 for arithmetic (exact number); EM or F1 for knowledge."""
  if kind == 'math':
    try:
      return float(float(answer.replace(' ', '')) == float(golden[0]))
    except (ValueError, IndexError):
      return 0.0
  if reward == 'f1':
    return float(qa_rewards.token_f1(answer, list(golden)))
  return float(qa_rewards.exact_match(answer, list(golden)))


def score(
  text: str,
  golden: Sequence[str],
  kind: str,
  reward: str = 'em',
  format_penalty: float = -1.0,
  max_calls: int | None = None,
) -> float:
  """The outcome reward of a policy output; never raises.

  Args:
    text: the decoded response.
    golden: accepted answers (strings).
    kind: `'math'` or `'qa'`.
    reward: one of `REWARDS` for `'qa'`.
    format_penalty: reward of a malformed output (Tool-Star: -1).
    max_calls: the call budget (more calls is a format error).
  """
  p = parse(text, max_calls)
  if not p.ok or p.answer is None:
    return float(format_penalty)
  return correctness(p.answer, golden, kind, reward)


def is_correct(text: str, golden: Sequence[str], kind: str) -> bool:
  """Exact correctness of the (last) answer, ignoring the format."""
  found = re.findall(r'<answer>(.*?)</answer>', text if isinstance(text, str)
                     else '', re.DOTALL)  # fmt: skip
  if not found:
    return False
  return correctness(found[-1].strip(), golden, kind, 'em') == 1.0
