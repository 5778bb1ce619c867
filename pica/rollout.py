"""Batched multi-turn search rollouts with the KV-cache sampler.

Search-R1's agent loop (`search_r1/llm_agent/generation.py`) on the shared
tool loop `common.sampling.multiturn` with a `SearchEnvironment`: every turn
generates until `</search>`, `</answer>`, EOS or the per-turn token budget;
each row that stopped on a valid `<search> q </search>` gets `
<information>Doc 1(Title: ...) ... </information> ` (the top-k documents)
appended to its KV cache, a row with an invalid action gets a `<warning> ...
</warning>` block; rows that answered (or hit EOS) stop. After `max_turns`
served searches one last generation runs with no search served (Search-R1's
final `do_search=False` turn). Rows finish at different turns; finished rows
are masked in the sampler, and observations are appended as one ragged `[B,
M]` chunk of a fixed width (one compilation).

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

from common.sampling import multiturn
from common.sampling import sampler as sampler_lib
from common.synthetic.traces import information_block
from pica import protocol

FINISH = multiturn.FINISH


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


observation_ids = multiturn.observation_ids


class SearchEnvironment(multiturn.ToolEnvironment):
  """Search-R1's environment: `<search> q </search>` -> top-k documents.

  A turn that ended on `</search>` with a valid search action gets the
  `<information>` block of the retriever's top-k documents (served); any
  other stopped turn gets the `<warning>` block (not served).
  """

  call_tags = ('search',)
  answer_tag = 'answer'

  def __init__(self, retriever, topk: int, warning_text: str = ''):
    self.retriever = retriever
    self.topk = topk
    self.warning = f' <warning> {warning_text} </warning> '

  def respond(self, calls):
    out: list = [None] * len(calls)
    searches = []
    for j, c in enumerate(calls):
      action = protocol.parse_action(c.text)
      if c.tag == 'search' and action.kind == 'search':
        searches.append((j, action.content))
      else:
        out[j] = multiturn.Observation(self.warning, served=False)
    if searches:
      found = self.retriever.batch_search([q for _, q in searches], self.topk)
      for (j, q), docs in zip(searches, found, strict=True):
        out[j] = multiturn.Observation(
          f' {information_block(docs)} ',
          info=(q, [str(d['id']) for d in docs]),
        )
    return out

  def error_observation(self, call, error):
    return multiturn.Observation(
      f' <information> error: {type(error).__name__} </information> ',
      failed=True,
      info=('', []),
    )


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

  The loop is `common.sampling.multiturn.rollout` with a
  `SearchEnvironment`.

  Args:
    sampler: a `Sampler` with capacity >= `config.capacity(prompt_len)`.
    tokenizer: `encode/decode/token_id/pad_id/eos_id` (`WordTokenizer`).
    prompts: B prompt texts (e.g. `common.synthetic.search_prompt(q)`).
    retriever: a `common.retrieval.Retriever` (`batch_search`).
    rng: PRNG key.
    config: a `RolloutConfig`.
    prompt_len: P, prompts are left-padded to it (default: the longest).

  Returns:
    A `Rollout`.
  """
  env = SearchEnvironment(retriever, config.topk, config.warning_text)
  mt = multiturn.MultiTurnConfig(
    max_calls=config.max_turns,
    max_new_tokens=config.max_new_tokens,
    max_obs_tokens=config.max_info_tokens,
    temperature=config.temperature,
    top_k=config.top_k,
    top_p=config.top_p,
  )
  prompt_tokens, prompt_mask, out = multiturn.rollout(
    sampler, tokenizer, prompts, env, rng, mt, prompt_len
  )
  served = [[x for x in info if x is not None] for info in out.infos]
  return Rollout(
    prompt_tokens=prompt_tokens,
    prompt_mask=prompt_mask,
    tokens=out.tokens,
    response_mask=out.response_mask,
    loss_mask=out.loss_mask,
    logprobs=out.logprobs,
    search_ends=out.call_ends,
    num_searches=out.num_calls,
    texts=out.texts,
    queries=[[q for q, _ in s] for s in served],
    retrieved=[[ids for _, ids in s] for s in served],
    finish=out.finish,
  )
