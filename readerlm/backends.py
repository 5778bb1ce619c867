"""Backends behind one protocol: `generate(messages, **decode) -> str`.

`messages` are chat turns `[{'role': 'user', 'content': ...}]`; every
pipeline role (draft, refine, critique) talks to its backend through the
prompts of `roles.py`, so a rule backend, the project's own LM and an
OpenAI-compatible server (vLLM, llama.cpp, ...) are interchangeable.

* `RuleDrafter(name)`: a peer converter (`converters.DRAFTERS`); with a
  schema in the prompt it fills the schema from its Markdown
  (`refine.markdown_to_json`).
* `RuleRefiner()`, `RuleCritic()`: `refine.py`'s rules.
* `LMBackend(model, tokenizer, ...)`: greedy KV-cache decoding with
  `common.sampling` (repetition penalty 1.08 as the model card recommends);
  `generate_batch` decodes many prompts at once.
* `OpenAIBackend(base_url, model)`: `POST {base_url}/chat/completions`
  with a timeout; transport errors, HTTP errors and malformed replies raise
  `BackendError` (the pipeline records it for that page and goes on).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from typing import Protocol

import jax
import numpy as np

from common import sampling
from readerlm import converters
from readerlm import json_eval
from readerlm import prompt as prompt_lib
from readerlm import refine
from readerlm import roles


class BackendError(RuntimeError):
  """A backend could not produce an output for one request."""


class Backend(Protocol):
  def generate(self, messages: Sequence[dict], **decode) -> str: ...


def _user(messages: Sequence[dict]) -> str:
  users = [m['content'] for m in messages if m.get('role') == 'user']
  if not users:
    raise BackendError('no user message')
  return users[-1]


class RuleDrafter:
  """A peer converter as the Draft backend."""

  def __init__(self, name: str = 'html_to_markdown'):
    if name not in converters.DRAFTERS:
      raise ValueError(
        f'unknown converter {name!r}; known: {sorted(converters.DRAFTERS)}'
      )
    self.name = name

  def generate(self, messages, **decode) -> str:
    del decode
    parts = roles.parse(_user(messages))
    md = converters.convert(self.name, parts['html'])
    if parts.get('schema') is not None:
      return json.dumps(refine.markdown_to_json(md))
    return md


class RuleRefiner:
  """Boilerplate removal, dedup and normalisation (`refine.py`)."""

  def generate(self, messages, **decode) -> str:
    del decode
    parts = roles.parse(_user(messages))
    if parts.get('schema') is not None:
      value, err = json_eval.parse_json(parts['draft'])
      if err is not None:
        return parts['draft']
      props = parts['schema'].get('properties', {})
      if isinstance(value, dict) and props:
        value = {k: v for k, v in value.items() if k in props}
      return json.dumps(value)
    return refine.refine_markdown(parts['html'], parts['draft'])


class RuleCritic:
  """Heuristic verdicts (`refine.critique_markdown` / `critique_json`)."""

  def generate(self, messages, **decode) -> str:
    del decode
    parts = roles.parse(_user(messages))
    if parts.get('schema') is not None:
      ok, why = refine.critique_json(parts['output'], parts['schema'])
    else:
      ok, why = refine.critique_markdown(parts['html'], parts['output'])
    return why


class LMBackend:
  """The project's own decoder (any `common.models.Transformer`).

  Args:
    model: the NNX model (a Qwen2 checkpoint from `common.models.load_hf`,
      or a trained tiny model).
    tokenizer: `encode(text) -> ids`, `decode(ids) -> text`, `eos_id`,
      `pad_id` (e.g. `common.tokenizers.bpe.BPETokenizer`).
    max_prompt_len: prompts are left-padded to this; longer ones are cut
      from the left of the HTML (`truncate`), never silently dropped.
    max_new_tokens: generation budget.
    repetition_penalty: 1.08 as the model card recommends.
    batch_size: rows per compiled batch.
  """

  def __init__(
    self,
    model,
    tokenizer,
    max_prompt_len: int,
    max_new_tokens: int,
    repetition_penalty: float = 1.08,
    batch_size: int = 8,
    system: str | None = None,
  ):
    self.tokenizer = tokenizer
    self.max_prompt_len = max_prompt_len
    self.batch_size = batch_size
    self.system = system
    self.sampler = sampling.Sampler(
      model, capacity=max_prompt_len + max_new_tokens
    )
    eos = getattr(tokenizer, 'eos_ids', None) or (tokenizer.eos_id,)
    self.config = sampling.GenerationConfig(
      max_new_tokens=max_new_tokens,
      temperature=0.0,
      eos_ids=tuple(eos),
      pad_id=tokenizer.pad_id,
      repetition_penalty=repetition_penalty,
    )
    self.last_finish: list[str] = []

  def update(self, params) -> None:
    self.sampler.update(params)

  def _ids(self, messages) -> list[int]:
    text = prompt_lib.chat_prompt(_user(messages), self.system)
    ids = list(self.tokenizer.encode(text))
    if len(ids) > self.max_prompt_len:  # keep the instruction's tail turn
      half = self.max_prompt_len // 2
      ids = ids[:half] + ids[-(self.max_prompt_len - half) :]
    return ids

  def generate_batch(self, batch: Sequence[Sequence[dict]]) -> list[str]:
    """Decodes each conversation; `last_finish` gets each finish reason."""
    out, finish = [], []
    for i in range(0, len(batch), self.batch_size):
      chunk = [self._ids(m) for m in batch[i : i + self.batch_size]]
      n = len(chunk)
      chunk += [chunk[-1]] * (self.batch_size - n)
      tokens = np.full(
        (self.batch_size, self.max_prompt_len), self.tokenizer.pad_id, np.int32
      )
      mask = np.zeros(tokens.shape, bool)
      for r, ids in enumerate(chunk):
        tokens[r, self.max_prompt_len - len(ids) :] = ids
        mask[r, self.max_prompt_len - len(ids) :] = True
      res = jax.device_get(
        self.sampler.sample(tokens, mask, jax.random.key(0), self.config)
      )
      for r in range(n):
        ids = res.tokens[r][res.mask[r]].tolist()
        ids = [t for t in ids if t not in self.config.eos_ids]
        out.append(self.tokenizer.decode(ids))
      finish += sampling.finish_reason_names(res.finish_reason)[:n]
    self.last_finish = finish
    return out

  def generate(self, messages, **decode) -> str:
    del decode
    return self.generate_batch([messages])[0]


class OpenAIBackend:
  """An OpenAI-compatible chat-completions endpoint (no SDK needed).

  Args:
    base_url: e.g. `http://127.0.0.1:8000/v1`.
    model: the served model's name.
    timeout: seconds per request.
    api_key: sent as a bearer token when given.
    max_tokens, temperature, repetition_penalty: sent with each request
      (vLLM reads `repetition_penalty`; other servers ignore it).
  """

  def __init__(
    self,
    base_url: str,
    model: str,
    timeout: float = 60.0,
    api_key: str | None = None,
    max_tokens: int = 4096,
    temperature: float = 0.0,
    repetition_penalty: float = 1.08,
  ):
    self.url = base_url.rstrip('/') + '/chat/completions'
    self.model, self.timeout, self.api_key = model, timeout, api_key
    self.body = {
      'max_tokens': max_tokens,
      'temperature': temperature,
      'repetition_penalty': repetition_penalty,
    }

  def generate(self, messages, **decode) -> str:
    body: dict[str, Any] = {
      'model': self.model, 'messages': list(messages), **self.body, **decode
    }  # fmt: skip
    headers = {'Content-Type': 'application/json'}
    if self.api_key:
      headers['Authorization'] = f'Bearer {self.api_key}'
    req = urllib.request.Request(
      self.url, json.dumps(body).encode(), headers, method='POST'
    )
    try:
      with urllib.request.urlopen(req, timeout=self.timeout) as resp:
        reply = json.loads(resp.read().decode('utf-8'))
    except urllib.error.HTTPError as e:
      raise BackendError(f'{self.url}: HTTP {e.code} {e.reason}') from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
      raise BackendError(f'{self.url}: {type(e).__name__}: {e}') from None
    except json.JSONDecodeError as e:
      raise BackendError(f'{self.url}: reply is not JSON ({e})') from None
    try:
      return reply['choices'][0]['message']['content']
    except (KeyError, IndexError, TypeError):
      raise BackendError(
        f'{self.url}: reply has no choices[0].message.content: '
        f'{str(reply)[:200]}'
      ) from None
