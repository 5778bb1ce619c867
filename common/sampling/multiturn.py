"""Batched multi-turn tool rollouts over the KV-cache sampler.

The agent loop that search and tool-integrated reasoning agents share
(Search-R1's `generation.py`, Tool-Star's `vllm_with_search` rollout): every
turn generates until a tool's closing tag (`</search>`, `</calc>`), the
answer's closing tag, EOS or the per-turn token budget; each row that stopped
for a tool gets the environment's observation appended to its KV cache (no
prefix recomputation); rows that answered (or hit EOS) stop. After `max_calls`
tool turns (a malformed turn counts as one) one last generation runs with no
tool served. Rows finish at different turns; finished rows are masked in the
sampler, and observations are appended as one ragged `[B, M]` chunk of a fixed
width (one compilation).

The environment is a `ToolEnvironment`: it maps the turn text of every
row that stopped (for a tool, or for nothing: a malformed action) to an
`Observation`. Tool execution errors come back as observation text (the
policy reads them), never as exceptions: `safe_respond` turns an exception
of `respond` into an `error:` observation for each affected row.

The result holds the response tokens right-padded to a fixed width, the
`response_mask` (every real token), the `loss_mask` (policy-generated
tokens only: observation tokens excluded, Search-R1's `info_mask`,
Tool-Star's `result_mask`), the sampling log-probs, and the response index
of each served call's closing tag.

`continue_rollout` runs the same loop from an existing `SamplerState`
(e.g. a KV cache forked at an anchor inside an expert trajectory,
`common.sampling.fork`), with a per-row budget of remaining tool calls.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import numpy as np

from common.sampling import sampler as sampler_lib

FINISH = ('answer', 'eos', 'turns')


class ToolCall(NamedTuple):
  """One row's stopped turn, handed to the environment.

  Attributes:
    row: the batch row.
    tag: the tool tag whose closing tag ended the turn (e.g. `'search'`),
      or None when the turn ended without one (length limit: malformed).
    text: the decoded text of this turn.
  """

  row: int
  tag: str | None
  text: str


class Observation(NamedTuple):
  """The environment's reply to a `ToolCall`.

  Attributes:
    text: appended to the row's context (e.g. ` <result> 84 </result> `).
    served: whether it counts as a served tool call (the budget).
    failed: whether the tool reported an error (a served call may fail).
    info: anything the caller wants back (queries, document ids, ...).
  """

  text: str
  served: bool = True
  failed: bool = False
  info: Any = None


class ToolEnvironment(abc.ABC):
  """Tools behind closing tags; see the module docstring.

  Subclasses set `call_tags` (tags whose closing tag pauses generation)
  and `answer_tag`, and implement `respond`.
  """

  call_tags: tuple[str, ...] = ()
  answer_tag: str = 'answer'

  @abc.abstractmethod
  def respond(self, calls: Sequence[ToolCall]) -> list[Observation]:
    """One `Observation` per call (batched, e.g. one retrieval request)."""

  def error_observation(self, call: ToolCall, error: Exception) -> Observation:
    """What the policy sees when `respond` raised (override to re-tag)."""
    return Observation(
      f' <result> error: {type(error).__name__} </result> ',
      served=call.tag is not None,
      failed=True,
      info={'error': repr(error)},
    )


def safe_respond(
  env: ToolEnvironment, calls: Sequence[ToolCall]
) -> list[Observation]:
  """`env.respond(calls)`, with errors reported as observations.

  If the batched call raises, each call is retried alone and a call that
  still raises gets `env.error_observation`; a reply of the wrong length
  or type is an error of the environment (a bug), raised as `TypeError`.
  """
  if not calls:
    return []
  try:
    out = list(env.respond(calls))
  except Exception:  # noqa: BLE001 (a tool failure is the policy's news)
    out = []
    for c in calls:
      try:
        out += list(env.respond([c]))
      except Exception as e:  # noqa: BLE001
        out.append(env.error_observation(c, e))
  if len(out) != len(calls) or not all(isinstance(o, Observation) for o in out):
    raise TypeError(
      f'{type(env).__name__}.respond must return one Observation per call '
      f'({len(calls)}); got {len(out)} items'
    )
  return out


@dataclasses.dataclass(frozen=True)
class MultiTurnConfig:
  """Agent-loop settings.

  Attributes:
    max_calls: tool turns at most per trajectory (Tool-Star: 3 calls).
    max_new_tokens: tokens generated per turn at most.
    max_obs_tokens: tokens of one observation at most (longer ones are cut,
      keeping their closing tag).
    temperature, top_k, top_p: sampling (`common.sampling`).
  """

  max_calls: int = 3
  max_new_tokens: int = 48
  max_obs_tokens: int = 96
  temperature: float = 1.0
  top_k: int | None = None
  top_p: float = 1.0

  def __post_init__(self):
    for name in ('max_calls', 'max_new_tokens', 'max_obs_tokens'):
      v = getattr(self, name)
      low = 0 if name == 'max_calls' else 1
      if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(
          f'MultiTurnConfig.{name} must be an int >= {low}, got {v!r}'
        )
    if self.max_obs_tokens < 3:
      raise ValueError(
        f'MultiTurnConfig.max_obs_tokens must be >= 3, got '
        f'{self.max_obs_tokens}'
      )

  @property
  def response_len(self) -> int:
    """R: the fixed width of a response (generated + observations)."""
    return (
      self.max_calls + 1
    ) * self.max_new_tokens + self.max_calls * self.max_obs_tokens

  def capacity(self, prompt_len: int) -> int:
    """KV-cache capacity a rollout with `prompt_len`-token prompts needs."""
    return prompt_len + self.response_len


class MultiTurnRollout(NamedTuple):
  """A batch of finished trajectories (host numpy arrays).

  Attributes:
    tokens: `[B, R]` int32 response tokens, right-padded with pad.
    response_mask: `[B, R]` bool, every real response token.
    loss_mask: `[B, R]` bool, tokens the policy generated.
    logprobs: `[B, R]` float32 sampling log-probs (0 off `loss_mask`).
    call_ends: `[B, max_calls]` int32 response index of each served call's
      closing tag, valid entries first, -1 after.
    num_calls: `[B]` int32 served tool calls.
    num_failed: `[B]` int32 served calls whose tool reported an error.
    num_invalid: `[B]` int32 turns that stopped without a tool call
      (malformed actions answered with a warning observation).
    texts: decoded responses.
    infos: per row, the `info` of each observation, in order.
    finish: per row, one of `FINISH`.
  """

  tokens: np.ndarray
  response_mask: np.ndarray
  loss_mask: np.ndarray
  logprobs: np.ndarray
  call_ends: np.ndarray
  num_calls: np.ndarray
  num_failed: np.ndarray
  num_invalid: np.ndarray
  texts: list[str]
  infos: list[list[Any]]
  finish: list[str]


def observation_ids(tokenizer, text: str, max_tokens: int) -> list[int]:
  """Token ids of an observation, cut to `max_tokens` keeping its last tag.

  A cut block (`<information> ...`) is re-closed, so the next turn always
  sees a well-formed block.
  """
  ids = tokenizer.encode(text)
  if len(ids) <= max_tokens:
    return ids
  return ids[: max_tokens - 2] + ids[-2:]


def encode(tokenizer, text: str, add_bos: bool = False) -> list[int]:
  """Token ids of `text`; BOS first if asked and the tokenizer has one (a
  word tokenizer's `<bos>`; Qwen2's BPE has none)."""
  ids = list(tokenizer.encode(text))
  bos = getattr(tokenizer, 'bos_id', None)
  return [bos] + ids if add_bos and bos is not None else ids


def tag_sequences(tokenizer, tag: str) -> tuple[tuple[int, ...], ...]:
  """The token sequences that spell `tag` (e.g. `'</search>'`) in
  generated text: alone, and after a space (a byte-level BPE merges the
  space into the first piece: `' </'`, `'search'`, `'>'`). One single-id
  sequence for a word tokenizer, whose tags are tokens."""
  unk = getattr(tokenizer, 'unk_id', None)
  out = []
  for text in (tag, ' ' + tag):
    ids = tuple(encode(tokenizer, text))
    if unk is not None and unk in ids:
      raise ValueError(f'{tag!r} is not in the tokenizer vocabulary')
    if ids and ids not in out:
      out.append(ids)
  if not out:
    raise ValueError(f'the tokenizer encodes {tag!r} as no tokens')
  return tuple(out)


def ended_by(ids: Sequence[int], sequences) -> bool:
  """Whether `ids` ends with one of `sequences`."""
  return any(
    len(ids) >= len(s) and tuple(ids[len(ids) - len(s) :]) == s
    for s in sequences
  )


def left_pad(tokenizer, texts: Sequence[str], prompt_len: int | None = None):
  """`(tokens [B, P], mask [B, P])`: texts encoded with BOS, left-padded."""
  if len(texts) == 0:
    raise ValueError('a rollout needs at least one prompt')
  encoded = [encode(tokenizer, p, add_bos=True) for p in texts]
  p_len = prompt_len or max(len(e) for e in encoded)
  if max(len(e) for e in encoded) > p_len:
    raise ValueError(f'a prompt has more than prompt_len={p_len} tokens')
  tokens = np.full((len(texts), p_len), tokenizer.pad_id, np.int32)
  mask = np.zeros((len(texts), p_len), bool)
  for i, e in enumerate(encoded):
    tokens[i, p_len - len(e) :] = e
    mask[i, p_len - len(e) :] = True
  return tokens, mask


def generation_config(tokenizer, env: ToolEnvironment, config):
  """The sampler's `GenerationConfig`: stop at every closing tag (each of
  its token sequences, `tag_sequences`)."""
  closes = [f'</{t}>' for t in (*env.call_tags, env.answer_tag)]
  return sampler_lib.GenerationConfig(
    max_new_tokens=config.max_new_tokens,
    temperature=config.temperature,
    top_k=config.top_k,
    top_p=config.top_p,
    eos_ids=(tokenizer.eos_id,),
    stop_sequences=tuple(
      seq for c in closes for seq in tag_sequences(tokenizer, c)
    ),
    pad_id=tokenizer.pad_id,
  )


def rollout(
  sampler: sampler_lib.Sampler,
  tokenizer,
  prompts: Sequence[str],
  env: ToolEnvironment,
  rng: jax.Array,
  config: MultiTurnConfig,
  prompt_len: int | None = None,
) -> tuple[np.ndarray, np.ndarray, MultiTurnRollout]:
  """Runs the tool loop for a batch of prompts.

  Args:
    sampler: a `Sampler` with capacity >= `config.capacity(prompt_len)`.
    tokenizer: `encode/decode/pad_id/eos_id` (and `bos_id` if it has
      one): a `WordTokenizer` or a checkpoint's `BPETokenizer`; closing
      tags may be several tokens (`tag_sequences`).
    prompts: B prompt texts.
    env: the `ToolEnvironment`.
    rng: PRNG key.
    config: a `MultiTurnConfig`.
    prompt_len: P, prompts are left-padded to it (default: the longest).

  Returns:
    `(prompt_tokens [B, P], prompt_mask [B, P], rollout)`.
  """
  prompt_tokens, prompt_mask = left_pad(tokenizer, prompts, prompt_len)
  p_len = prompt_tokens.shape[1]
  if sampler.capacity < config.capacity(p_len):
    raise ValueError(
      f'sampler capacity {sampler.capacity} < {config.capacity(p_len)} '
      f'needed (prompt {p_len} + response {config.response_len})'
    )
  state = sampler.prefill(prompt_tokens, prompt_mask)
  out = continue_rollout(sampler, state, tokenizer, env, rng, config)
  return prompt_tokens, prompt_mask, out


def continue_rollout(
  sampler: sampler_lib.Sampler,
  state: sampler_lib.SamplerState,
  tokenizer,
  env: ToolEnvironment,
  rng: jax.Array,
  config: MultiTurnConfig,
  calls_left: Sequence[int] | np.ndarray | None = None,
  turn_prefixes: Sequence[Sequence[int]] | None = None,
) -> MultiTurnRollout:
  """The tool loop from a prefilled state (see module docstring).

  Args:
    sampler: the `Sampler` that made `state`.
    state: `SamplerState` after each row's context (prompt, or prompt plus a
      forced prefix); its unfinished rows generate.
    tokenizer: as in `rollout`.
    env: the `ToolEnvironment`.
    rng: PRNG key.
    config: a `MultiTurnConfig`.
    calls_left: `[B]` tool turns each row may still take (default
      `config.max_calls`; a forked branch passes what its prefix left).
      Row i generates at most `calls_left[i] + 1` turns; a turn that stopped
      without a valid call counts as one (as Search-R1's turn budget).
    turn_prefixes: per row, the token ids already in its context that belong
      to its first turn (a forced prefix cut inside a call, e.g. the ids of
      `<calc> 12`): decoded together with the first turn's tokens for the
      environment (so a number split at the cut is read whole).

  Returns:
    A `MultiTurnRollout` of what was generated and observed from `state`.
  """
  b = int(state.finished.shape[0])
  left = np.full(b, config.max_calls, np.int64)
  if calls_left is not None:
    left = np.asarray(calls_left, np.int64).reshape(-1)
    if left.shape != (b,) or left.min() < 0 or left.max() > config.max_calls:
      raise ValueError(
        f'calls_left must be [{b}] ints in [0, {config.max_calls}], got '
        f'{np.asarray(calls_left).tolist()}'
      )
  if turn_prefixes is not None and len(turn_prefixes) != b:
    raise ValueError(
      f'turn_prefixes needs {b} entries, got {len(turn_prefixes)}'
    )
  gen_cfg = generation_config(tokenizer, env, config)
  call_closes = {t: tag_sequences(tokenizer, f'</{t}>') for t in env.call_tags}
  close_answer = tag_sequences(tokenizer, f'</{env.answer_tag}>')
  pad = tokenizer.pad_id
  resp = [[] for _ in range(b)]
  logp = [[] for _ in range(b)]
  gen = [[] for _ in range(b)]
  ends = [[] for _ in range(b)]
  infos = [[] for _ in range(b)]
  failed = np.zeros(b, np.int32)
  invalid = np.zeros(b, np.int32)
  finish = [''] * b
  done = np.asarray(state.finished).copy()
  for i in np.nonzero(done)[0]:
    finish[i] = 'eos'
  for turn in range(config.max_calls + 1):
    if done.all():
      break
    state, out = sampler.generate(state, jax.random.fold_in(rng, turn), gen_cfg)
    toks, mask = np.asarray(out.tokens), np.asarray(out.mask)
    lps = np.asarray(out.logprobs)
    reasons = np.asarray(out.finish_reason)
    calls: list[ToolCall] = []
    for i in np.nonzero(~done)[0]:
      n = int(mask[i].sum())
      ids = toks[i, :n].tolist()
      resp[i] += ids
      logp[i] += lps[i, :n].tolist()
      gen[i] += [True] * n
      if reasons[i] == sampler_lib.FINISH_EOS:
        done[i], finish[i] = True, 'eos'
      elif ended_by(ids, close_answer):
        done[i], finish[i] = True, 'answer'
      elif turn >= left[i]:
        done[i], finish[i] = True, 'turns'
      else:
        tag = next(
          (t for t, seqs in call_closes.items() if ended_by(ids, seqs)), None
        )
        head = [] if turn or turn_prefixes is None else list(turn_prefixes[i])
        calls.append(ToolCall(int(i), tag, tokenizer.decode(head + ids)))
    obs: dict[int, list[int]] = {}
    for call, o in zip(calls, safe_respond(env, calls), strict=True):
      i = call.row
      if o.served:
        ends[i].append(len(resp[i]) - 1)
        failed[i] += int(o.failed)
      else:
        invalid[i] += 1
      infos[i].append(o.info)
      obs[i] = observation_ids(tokenizer, o.text, config.max_obs_tokens)
    if done.all():
      break
    chunk = np.full((b, config.max_obs_tokens), pad, np.int32)
    chunk_mask = np.zeros((b, config.max_obs_tokens), bool)
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
  call_ends = np.full((b, max(config.max_calls, 1)), -1, np.int32)
  for i in range(b):
    n = len(resp[i])
    tokens[i, :n] = resp[i]
    response_mask[i, :n] = True
    loss_mask[i, :n] = gen[i]
    logprobs[i, :n] = logp[i]
    call_ends[i, : len(ends[i])] = ends[i]
  return MultiTurnRollout(
    tokens=tokens,
    response_mask=response_mask,
    loss_mask=loss_mask,
    logprobs=logprobs,
    call_ends=call_ends[:, : config.max_calls],
    num_calls=np.array([len(e) for e in ends], np.int32),
    num_failed=failed,
    num_invalid=invalid,
    texts=[tokenizer.decode(r_) for r_ in resp],
    infos=infos,
    finish=finish,
  )
