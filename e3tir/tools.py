"""The tool environment: a calculator and a retriever behind closing tags.

`ToolEnvironment` for `common.sampling.multiturn`: `<calc> e </calc>` runs
`common.synthetic.calculator` and appends ` <result> value </result> `;
`<search> q </search>` runs a `common.retrieval` retriever (BM25 over the
knowledge world's corpus) and appends the top-k documents as
` <information> Doc 1(Title: t) ... </information> `. A tool error comes
back in the observation (`<result> error: division by zero </result>`,
counted as a failed call); a turn that stopped without a closing call tag
(malformed, or an empty call) gets ` <warning> invalid tool call </warning>
` and is not a served call. Nothing the policy writes makes it raise.

`make_tools` checks the tool table once (configuration errors raise).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping

from common.sampling import multiturn
from common.synthetic import calculator
from common.synthetic.traces import information_block
from e3tir import trajectory

WARNING = ' <warning> invalid tool call </warning> '


def calculator_tool(expr: str) -> str:
  """The calculator's reply text (`'84'` or `'error: ...'`)."""
  return calculator.run_tool(expr)


def retrieval_tool(retriever, topk: int) -> Callable[[str], str]:
  """`query -> '<information>...</information>'` over `retriever`'s top-k."""
  if topk < 1:
    raise ValueError(f'retrieval topk must be >= 1, got {topk}')

  def search(query: str) -> str:
    return information_block(retriever.search(query, topk))

  return search


def make_tools(tools: Mapping[str, Callable[[str], str]]):
  """Validates `{tag: fn}`; tags must be known call tags, fns callable."""
  if not tools:
    raise ValueError('the tool environment needs at least one tool')
  for tag, fn in tools.items():
    if tag not in trajectory.CALL_TAGS:
      raise ValueError(
        f'unknown tool tag {tag!r}; allowed: {sorted(trajectory.CALL_TAGS)}'
      )
    if not callable(fn):
      raise ValueError(f'tool {tag!r} is not callable: {fn!r}')
  return dict(tools)


class ToolIntegratedEnvironment(multiturn.ToolEnvironment):
  """Calculator + retrieval environment (module docstring)."""

  answer_tag = 'answer'

  def __init__(self, tools: Mapping[str, Callable[[str], str]]):
    self.tools = make_tools(tools)
    self.call_tags = tuple(self.tools)

  def _one(self, call: multiturn.ToolCall) -> multiturn.Observation:
    tag = call.tag
    content = ''
    if tag is not None:
      start = call.text.rfind(f'<{tag}>')
      end = call.text.rfind(f'</{tag}>')
      if 0 <= start < end:
        content = call.text[start + len(tag) + 2 : end].strip()
    if tag is None or not content:
      return multiturn.Observation(WARNING, served=False, info=None)
    obs_tag = trajectory.CALL_TAGS[tag]
    try:
      reply = self.tools[tag](content)
    except Exception as e:  # noqa: BLE001 (errors go back to the policy)
      reply = f'error: {type(e).__name__}'
    failed = reply.startswith('error:')
    if obs_tag == 'result':
      text = f' <result> {reply} </result> '
    else:
      text = (
        f' {reply} '
        if reply.startswith('<information>')
        else (f' <information> {reply} </information> ')
      )
    return multiturn.Observation(
      text, served=True, failed=failed, info=(tag, content)
    )

  def respond(self, calls):
    return [self._one(c) for c in calls]
