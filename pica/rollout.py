"""Batched multi-turn search rollouts with the KV-cache sampler.

Search-R1's agent loop (`search_r1/llm_agent/generation.py`) on
`common.sampling.Sampler`: every turn generates until `</search>`,
`</answer>`, EOS or the per-turn token budget; each row that stopped on a
valid `<search> q </search>` gets ` <information>Doc 1(Title: ...) ...
</information> ` (the top-k documents) appended to its KV cache, a row with
an invalid action gets a `<warning> ... </warning>` block; rows that
answered (or hit EOS) stop. After `max_turns` served searches one last
generation runs with no search served (Search-R1's final `do_search=False`
turn). Rows finish at different turns; finished rows are masked in the
sampler, and observations are appended as one ragged `[B, M]` chunk of a
fixed width (one compilation).

The result holds the response tokens right-padded to a fixed width, the
`response_mask` (every real token), the `loss_mask` (policy-generated
tokens only: retrieved and warning tokens excluded, Search-R1's
`info_mask`), the sampling log-probs, and the response index of each served
search's `</search>` token, where the step rewards go.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np

from common.sampling import sampler as sampler_lib
from common.synthetic.traces import information_block
from pica import protocol

FINISH = ('answer', 'eos', 'turns')


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
  """Agent-loop settings.

  Attributes:
    max_turns: searches served at most per trajectory (PiCA: 5).
    max_new_tokens: tokens generated per turn at most.
    topk: documents per search (Search-R1/PiCA: 3).
    max_info_tokens: tokens of one observation block at most (longer
      blocks are cut and re-closed with `</information>`).
    temperature, top_k, top_p: sampling (`common.sampling`).
    warning_text: words inside the `<warning>` block sent after an invalid
      action (must tokenise with the policy's tokenizer).
  """

  max_turns: int = 4
  max_new_tokens: int = 48
  topk: int = 3
  max_info_tokens: int = 96
  temperature: float = 1.0
  top_k: int | None = None
  top_p: float = 1.0
  warning_text: str = ''

  def __post_init__(self):
    for name in ('max_turns', 'max_new_tokens', 'topk', 'max_info_tokens'):
      v = getattr(self, name)
      low = 0 if name == 'max_turns' else 1
      if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(
          f'RolloutConfig.{name} must be an int >= {low}, got {v!r}'
        )
    if self.max_info_tokens < 3:
      raise ValueError('RolloutConfig.max_info_tokens must be >= 3')

  @property
  def response_len(self) -> int:
    """R: the fixed width of a response (generated + observations)."""
    return (
      self.max_turns + 1
    ) * self.max_new_tokens + self.max_turns * self.max_info_tokens

  def capacity(self, prompt_len: int) -> int:
    """KV-cache capacity a rollout with `prompt_len`-token prompts needs."""
    return prompt_len + self.response_len


class Rollout(NamedTuple):
  """A batch of finished trajectories (host numpy arrays).

  Attributes:
    prompt_tokens: `[B, P]` int32, left-padded.
    prompt_mask: `[B, P]` bool.
    tokens: `[B, R]` int32 response tokens, right-padded with pad.
    response_mask: `[B, R]` bool, every real response token.
    loss_mask: `[B, R]` bool, tokens the policy generated.
    logprobs: `[B, R]` float32 sampling log-probs (0 off `loss_mask`).
    search_ends: `[B, max_turns]` int32 response index of each served
      search's `</search>` token, valid entries first, -1 after.
    num_searches: `[B]` int32 number of served searches.
    texts: decoded responses.
    queries: per row, the served queries.
    retrieved: per row, per served search, the retrieved document ids.
    finish: per row, one of `FINISH`.
  """

  prompt_tokens: np.ndarray
  prompt_mask: np.ndarray
  tokens: np.ndarray
  response_mask: np.ndarray
  loss_mask: np.ndarray
  logprobs: np.ndarray
  search_ends: np.ndarray
  num_searches: np.ndarray
  texts: list[str]
  queries: list[list[str]]
  retrieved: list[list[list[str]]]
  finish: list[str]


def observation_ids(tokenizer, text: str, max_tokens: int) -> list[int]:
  """Token ids of an observation, cut to `max_tokens` keeping its last tag.

  A cut `<information>` block is re-closed, so the next turn always sees a
  well-formed block.
  """
  ids = tokenizer.encode(text)
  if len(ids) <= max_tokens:
    return ids
  return ids[: max_tokens - 2] + ids[-2:]


def rollout(
  sampler: sampler_lib.Sampler,
  tokenizer,
  prompts: Sequence[str],
  retriever,
  rng: jax.Array,
  config: RolloutConfig,
  prompt_len: int | None = None,
) -> Rollout:
  """Runs the multi-turn search loop for a batch of prompts.

  Args:
    sampler: a `Sampler` with capacity >= `config.capacity(prompt_len)`.
    tokenizer: `encode/decode/token_id/pad_id/eos_id` (`WordTokenizer`).
    prompts: B prompt texts (e.g. `common.synthetic.search_prompt(q)`).
    retriever: a `pica.retriever.Retriever` (`batch_search`).
    rng: PRNG key.
    config: a `RolloutConfig`.
    prompt_len: P, prompts are left-padded to it (default: the longest).

  Returns:
    A `Rollout`.
  """
  b = len(prompts)
  if b == 0:
    raise ValueError('rollout needs at least one prompt')
  encoded = [tokenizer.encode(p, add_bos=True) for p in prompts]
  p_len = prompt_len or max(len(e) for e in encoded)
  if max(len(e) for e in encoded) > p_len:
    raise ValueError(f'a prompt has more than prompt_len={p_len} tokens')
  if sampler.capacity < config.capacity(p_len):
    raise ValueError(
      f'sampler capacity {sampler.capacity} < {config.capacity(p_len)} '
      f'needed (prompt {p_len} + response {config.response_len})'
    )
  pad = tokenizer.pad_id
  prompt_tokens = np.full((b, p_len), pad, np.int32)
  prompt_mask = np.zeros((b, p_len), bool)
  for i, e in enumerate(encoded):
    prompt_tokens[i, p_len - len(e) :] = e
    prompt_mask[i, p_len - len(e) :] = True
  close_search = tokenizer.token_id('</search>')
  close_answer = tokenizer.token_id('</answer>')
  gen_cfg = sampler_lib.GenerationConfig(
    max_new_tokens=config.max_new_tokens,
    temperature=config.temperature,
    top_k=config.top_k,
    top_p=config.top_p,
    eos_ids=(tokenizer.eos_id,),
    stop_sequences=((close_search,), (close_answer,)),
    pad_id=pad,
  )
  warning = f' <warning> {config.warning_text} </warning> '
  resp = [[] for _ in range(b)]
  logp = [[] for _ in range(b)]
  gen = [[] for _ in range(b)]
  ends = [[] for _ in range(b)]
  queries = [[] for _ in range(b)]
  retrieved = [[] for _ in range(b)]
  finish = [''] * b
  done = np.zeros(b, bool)
  state = sampler.prefill(prompt_tokens, prompt_mask)
  for turn in range(config.max_turns + 1):
    state, out = sampler.generate(state, jax.random.fold_in(rng, turn), gen_cfg)
    toks, mask = np.asarray(out.tokens), np.asarray(out.mask)
    lps = np.asarray(out.logprobs)
    reasons = np.asarray(out.finish_reason)
    obs: dict[int, list[int]] = {}
    to_search: list[tuple[int, str]] = []
    for i in np.nonzero(~done)[0]:
      n = int(mask[i].sum())
      ids = toks[i, :n].tolist()
      resp[i] += ids
      logp[i] += lps[i, :n].tolist()
      gen[i] += [True] * n
      if reasons[i] == sampler_lib.FINISH_EOS:
        done[i], finish[i] = True, 'eos'
      elif n and ids[-1] == close_answer:
        done[i], finish[i] = True, 'answer'
      elif turn == config.max_turns:
        done[i], finish[i] = True, 'turns'
      else:
        action = protocol.parse_action(tokenizer.decode(ids))
        if n and ids[-1] == close_search and action.kind == 'search':
          to_search.append((i, action.content))
        else:
          obs[i] = observation_ids(tokenizer, warning, config.max_info_tokens)
    if to_search:
      found = retriever.batch_search([q for _, q in to_search], config.topk)
      for (i, q), docs in zip(to_search, found, strict=True):
        ends[i].append(len(resp[i]) - 1)
        queries[i].append(q)
        retrieved[i].append([str(d['id']) for d in docs])
        text = f' {information_block(docs)} '
        obs[i] = observation_ids(tokenizer, text, config.max_info_tokens)
    if done.all():
      break
    chunk = np.full((b, config.max_info_tokens), pad, np.int32)
    chunk_mask = np.zeros((b, config.max_info_tokens), bool)
    for i, ids in obs.items():
      chunk[i, : len(ids)] = ids
      chunk_mask[i, : len(ids)] = True
      resp[i] += ids
      logp[i] += [0.0] * len(ids)
      gen[i] += [False] * len(ids)
    state = sampler.append(state, chunk, chunk_mask)
    state = state._replace(finished=state.finished | done)
  r = config.response_len
  tokens = np.full((b, r), pad, np.int32)
  response_mask = np.zeros((b, r), bool)
  loss_mask = np.zeros((b, r), bool)
  logprobs = np.zeros((b, r), np.float32)
  search_ends = np.full((b, config.max_turns), -1, np.int32)
  for i in range(b):
    n = len(resp[i])
    tokens[i, :n] = resp[i]
    response_mask[i, :n] = True
    loss_mask[i, :n] = gen[i]
    logprobs[i, :n] = logp[i]
    search_ends[i, : len(ends[i])] = ends[i]
  return Rollout(
    prompt_tokens=prompt_tokens,
    prompt_mask=prompt_mask,
    tokens=tokens,
    response_mask=response_mask,
    loss_mask=loss_mask,
    logprobs=logprobs,
    search_ends=search_ends,
    num_searches=np.array([len(e) for e in ends], np.int32),
    texts=[tokenizer.decode(r_) for r_ in resp],
    queries=queries,
    retrieved=retrieved,
    finish=finish,
  )
