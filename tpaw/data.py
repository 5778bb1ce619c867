"""SFT data for self-play: JSONL loaders and the token layout TPAW trains on.

Two real formats are read:

* chat JSONL (UltraChat-200k, TRL's conversational format): one
  `{"messages": [{"role": "user"|"assistant"|"system", "content": str},
  ...]}` per line. The SFT target `y` is the last assistant turn; the
  prompt `x` is every message before it.
* prompt/completion JSONL (TRL's prompt-completion format):
  `{"prompt": str, "completion": str}`, or conversational
  `{"prompt": [messages], "completion": [messages]}`.

Messages are rendered as `"<role>: <content>\\n"` lines with an
`"assistant:"` cue at the end of the prompt (`render_messages`), or by any
`render(messages) -> str` passed to the readers, e.g. a Hugging Face
model's chat template (`common.tokenizers.BPETokenizer.render_chat`).
Every error names the file, the line and the field.

Encoded pairs use one layout for SFT, sampling and the preference losses:
the prompt left-padded to `P` tokens (what the KV-cache sampler takes), the
response right-padded to `R` tokens and ended by EOS (what the sampler
returns), so a sequence is `concat(prompt, response)` `[P + R]`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from common import metrics

ROLES = ('system', 'user', 'assistant')


class DataFormatError(ValueError):
  """A malformed SFT record; the message names the file, line and field."""


@dataclasses.dataclass(frozen=True)
class SFTRecord:
  """One SFT pair.

  Attributes:
    prompt: the rendered prompt text `x`.
    response: the target `y`.
    source: where it came from (`path:line`, or a synthetic id).
  """

  prompt: str
  response: str
  source: str


Render = Callable[[Sequence[dict]], str]


def render_messages(messages: Sequence[dict], cue: bool = True) -> str:
  """`"role: content\\n"` per message (+ an `"assistant:"` cue)."""
  text = ''.join(f'{m["role"]}: {m["content"]}\n' for m in messages)
  return text + ('assistant:' if cue else '')


def _lines(path: str | os.PathLike):
  return metrics.iter_jsonl_objects(
    path, kind='SFT', error=DataFormatError, allow_empty=False
  )


def _check_messages(where: str, field: str, messages: Any) -> list[dict]:
  if not isinstance(messages, list) or not messages:
    raise DataFormatError(
      f'{where}: field {field!r} must be a non-empty list of '
      f'{{"role", "content"}} objects; got {messages!r:.80}.'
    )
  for i, m in enumerate(messages):
    at = f'{where}: field {field}[{i}]'
    if not isinstance(m, dict) or 'role' not in m or 'content' not in m:
      raise DataFormatError(
        f'{at} must be an object with "role" and "content"; got {m!r:.80}.'
      )
    if m['role'] not in ROLES:
      raise DataFormatError(
        f'{at}.role is {m["role"]!r}; allowed: {", ".join(ROLES)}.'
      )
    if not isinstance(m['content'], str):
      raise DataFormatError(
        f'{at}.content must be a string; got {type(m["content"]).__name__}.'
      )
  return messages


def read_chat_jsonl(
  path: str | os.PathLike, render: Render = render_messages
) -> list[SFTRecord]:
  """Reads a chat-format JSONL SFT file (see the module docstring).

  Args:
    path: the file.
    render: renders the prompt's messages (with the assistant cue).

  Raises:
    FileNotFoundError: no such file.
    DataFormatError: an empty file, invalid JSON, a record without
      `messages`, a malformed message, or no assistant turn (naming the
      file, line and field).
  """
  out = []
  for n, row in _lines(path):
    where = f'{os.fspath(path)}:{n}'
    if 'messages' not in row:
      raise DataFormatError(
        f'{where}: missing field "messages" (chat format: '
        f'{{"messages": [{{"role", "content"}}, ...]}}); fields: '
        f'{sorted(row)}.'
      )
    messages = _check_messages(where, 'messages', row['messages'])
    last = max(
      (i for i, m in enumerate(messages) if m['role'] == 'assistant'),
      default=None,
    )
    if last is None:
      raise DataFormatError(
        f'{where}: field "messages" has no assistant turn (the SFT target); '
        f'roles: {[m["role"] for m in messages]}.'
      )
    if last == 0:
      raise DataFormatError(
        f'{where}: field "messages" has no turn before the assistant turn '
        '(an empty prompt).'
      )
    response = messages[last]['content']
    if not response.strip():
      raise DataFormatError(
        f'{where}: field messages[{last}].content (the target) is empty.'
      )
    out.append(SFTRecord(render(messages[:last]), response, where))
  return out


def read_prompt_completion_jsonl(
  path: str | os.PathLike, render: Render = render_messages
) -> list[SFTRecord]:
  """Reads a prompt/completion JSONL file (plain or conversational).

  Args:
    path: the file.
    render: renders a conversational prompt (with the assistant cue).

  Raises:
    FileNotFoundError: no such file.
    DataFormatError: an empty file, invalid JSON, a missing or empty
      `prompt` / `completion`, or a completion without an assistant turn.
  """
  out = []
  for n, row in _lines(path):
    where = f'{os.fspath(path)}:{n}'
    for field in ('prompt', 'completion'):
      if field not in row:
        raise DataFormatError(
          f'{where}: missing field {field!r} (prompt/completion format); '
          f'fields: {sorted(row)}.'
        )
    prompt, completion = row['prompt'], row['completion']
    if isinstance(prompt, list):
      prompt = render(_check_messages(where, 'prompt', prompt))
    if isinstance(completion, list):
      turns = _check_messages(where, 'completion', completion)
      said = [m['content'] for m in turns if m['role'] == 'assistant']
      if not said:
        raise DataFormatError(
          f'{where}: field "completion" has no assistant turn.'
        )
      completion = '\n'.join(said)
    for field, value in (('prompt', prompt), ('completion', completion)):
      if not isinstance(value, str) or not value.strip():
        raise DataFormatError(
          f'{where}: field {field!r} must be a non-empty string or list of '
          f'messages; got {value!r:.80}.'
        )
    out.append(SFTRecord(prompt, completion, where))
  return out


FORMATS = {
  'chat_jsonl': read_chat_jsonl,
  'prompt_completion_jsonl': read_prompt_completion_jsonl,
}


def read_sft(
  path: str | os.PathLike, fmt: str, render: Render = render_messages
) -> list[SFTRecord]:
  """Reads `path` in format `fmt` (a key of `FORMATS`), see the readers."""
  if fmt not in FORMATS:
    raise ValueError(
      f'unknown SFT format {fmt!r}; allowed: {", ".join(sorted(FORMATS))}.'
    )
  return FORMATS[fmt](path, render)


@dataclasses.dataclass
class PairData:
  """Encoded SFT pairs (`N` examples) in the self-play layout.

  Attributes:
    prompt: `[N, P]` int32, left-padded.
    prompt_mask: `[N, P]` bool.
    target: `[N, R]` int32, right-padded, EOS included.
    target_mask: `[N, R]` bool.
    sources: `N` record sources (for messages).
  """

  prompt: np.ndarray
  prompt_mask: np.ndarray
  target: np.ndarray
  target_mask: np.ndarray
  sources: list[str]

  def __len__(self) -> int:
    return self.prompt.shape[0]

  def subset(self, idx) -> PairData:
    idx = np.asarray(idx)
    return PairData(
      self.prompt[idx],
      self.prompt_mask[idx],
      self.target[idx],
      self.target_mask[idx],
      [self.sources[i] for i in idx],
    )


def encode_pairs(
  encode: Callable[[str], Sequence[int]],
  records: Sequence[SFTRecord],
  prompt_len: int,
  response_len: int,
  eos_id: int,
  pad_id: int = 0,
  context: int | None = None,
) -> PairData:
  """Tokenizes records into `PairData` (left-padded prompts, EOS'd targets).

  Args:
    encode: `text -> token ids` (no special tokens).
    records: the SFT pairs.
    prompt_len: P, the prompt budget (config field `data.prompt_len`).
    response_len: R, the response budget incl. EOS (`data.response_len`).
    eos_id: appended to every target.
    pad_id: filler id.
    context: the model's `max_seq_len`; `P + R` must fit in it.

  Raises:
    ValueError: no records, `P + R` beyond the context, or a prompt /
      target longer than its budget (naming the record's source, the
      length and the field to raise). Nothing is truncated.
  """
  if not records:
    raise ValueError('encode_pairs: no SFT records to encode.')
  if context is not None and prompt_len + response_len > context:
    raise ValueError(
      f'data.prompt_len + data.response_len = {prompt_len} + '
      f'{response_len} exceeds the model context max_seq_len={context}.'
    )
  n = len(records)
  prompt = np.full((n, prompt_len), pad_id, np.int32)
  prompt_mask = np.zeros((n, prompt_len), bool)
  target = np.full((n, response_len), pad_id, np.int32)
  target_mask = np.zeros((n, response_len), bool)
  for i, r in enumerate(records):
    p = list(encode(r.prompt))
    y = list(encode(r.response)) + [eos_id]
    if not p:
      raise ValueError(f'{r.source}: the prompt encodes to no tokens.')
    if len(p) > prompt_len:
      raise ValueError(
        f'{r.source}: the prompt has {len(p)} tokens, more than '
        f'data.prompt_len={prompt_len} (the model context is '
        f'{context}); raise data.prompt_len or drop the record.'
      )
    if len(y) > response_len:
      raise ValueError(
        f'{r.source}: the target has {len(y)} tokens with EOS, more than '
        f'data.response_len={response_len}; raise data.response_len.'
      )
    prompt[i, prompt_len - len(p) :] = p
    prompt_mask[i, prompt_len - len(p) :] = True
    target[i, : len(y)] = y
    target_mask[i, : len(y)] = True
  return PairData(
    prompt, prompt_mask, target, target_mask, [r.source for r in records]
  )


def sequence_batch(prompt, prompt_mask, response, response_mask) -> dict:
  """`{'tokens', 'attention_mask', 'loss_mask'}` `[B, P + R]` of a pair side.

  The `common.train.sft` / `common.rl.concatenated_sequence_logprobs`
  layout: `loss_mask` marks the response tokens. Works on numpy and jax
  arrays alike.
  """
  xp = np if isinstance(prompt, np.ndarray) else jnp
  return {
    'tokens': xp.concatenate([prompt, response], axis=1),
    'attention_mask': xp.concatenate([prompt_mask, response_mask], axis=1),
    'loss_mask': xp.concatenate(
      [xp.zeros_like(prompt_mask), response_mask], axis=1
    ),
  }
