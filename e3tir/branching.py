"""Expert-guided branches: teacher-force, pick entropy anchors, fork, sample.

For a batch of G prompts with one expert trajectory each:

1. teacher-force `prompt + expert` through the current policy in one pass
   (`common.sampling.fork.teacher_force`), giving the KV cache of the whole
   sequence, the forced log-probs of the expert tokens and the per-token
   entropy;
2. pick K anchors per trajectory among the expert's own tokens
   (`anchors.select_anchors`; observation tokens are never anchors);
3. fork the cache at each anchor's prefix, B rows per anchor
   (`common.sampling.fork.fork`: no prefix recomputation), and continue
   each with the tool loop (`common.sampling.multiturn.continue_rollout`),
   with the tool calls its prefix has left.

Each branch row's response is `expert[:a] + continuation`; its
`prefix_mask` marks the expert part (off-policy, AAGD's target) and its
`old_logprobs` are the forced log-probs on the prefix and the sampling
log-probs on the continuation.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from common.rl import logprobs as logprobs_lib
from common.sampling import fork as fork_lib
from common.sampling import multiturn
from e3tir import aagd
from e3tir import anchors as anchors_lib


class Expert(NamedTuple):
  """An encoded expert trajectory.

  Attributes:
    ids: response token ids.
    policy: `[len(ids)]` bool, the expert's own tokens (not observations).
    calls_before: `[len(ids)]` int, tool calls closed before each position.
    text: the trajectory text.
  """

  ids: np.ndarray
  policy: np.ndarray
  calls_before: np.ndarray
  text: str


def encode_experts(tokenizer, texts: Sequence[str]) -> list[Expert]:
  """Tokenises expert trajectories and marks their observation tokens.

  One `aagd.observation_mask` call over the padded batch.
  """
  ids = [np.asarray(tokenizer.encode(t), np.int32) for t in texts]
  if not ids:
    return []
  e = max(len(x) for x in ids)
  batch = np.full((len(ids), e), tokenizer.pad_id, np.int32)
  for i, x in enumerate(ids):
    batch[i, : len(x)] = x
  opens = [tokenizer.token_id(f'<{t}>') for t in ('result', 'information')]
  closes = [tokenizer.token_id(f'</{t}>') for t in ('result', 'information')]
  obs = np.asarray(
    aagd.observation_mask(
      jnp.asarray(batch), jnp.asarray(opens), jnp.asarray(closes)
    )
  )
  call_ids = [tokenizer.token_id(f'</{t}>') for t in ('calc', 'search')]
  out = []
  for i, (x, text) in enumerate(zip(ids, texts, strict=True)):
    close = np.isin(x, call_ids)
    before = np.concatenate([[0], np.cumsum(close)[:-1]]).astype(np.int32)
    out.append(Expert(x, ~obs[i, : len(x)], before, text))
  return out


def encode_expert(tokenizer, text: str) -> Expert:
  """`encode_experts` of one trajectory."""
  return encode_experts(tokenizer, [text])[0]


def anchor_candidates(expert: Expert) -> np.ndarray:
  """`[E]` bool: positions a branch may start at (expert tokens, a >= 1)."""
  c = expert.policy.copy()
  c[0] = False
  return c


class Branches(NamedTuple):
  """Expert rows and branch rows (host arrays; W the response width).

  Attributes:
    expert_tokens, expert_loss, expert_logprobs: `[G, W]` the expert
      response, its trained tokens (observations out), forced log-probs.
    tokens: `[G*K*B, W]` branch responses (prefix + continuation).
    response_mask, loss_mask, prefix_mask: `[G*K*B, W]` bool.
    old_logprobs: `[G*K*B, W]` forced (prefix) / sampled (suffix).
    texts: decoded branch responses.
    anchors: `[G, K]` anchor positions in the expert response.
    entropy: `[G, E]` per-token entropy of the forced experts.
    num_calls, num_failed: `[G*K*B]` tool calls of the continuations.
  """

  expert_tokens: np.ndarray
  expert_loss: np.ndarray
  expert_logprobs: np.ndarray
  tokens: np.ndarray
  response_mask: np.ndarray
  loss_mask: np.ndarray
  prefix_mask: np.ndarray
  old_logprobs: np.ndarray
  texts: list[str]
  anchors: np.ndarray
  entropy: np.ndarray
  num_calls: np.ndarray
  num_failed: np.ndarray


@functools.partial(jax.jit, static_argnames=('k', 'mode'))
def _anchors(rng, logits, tokens, cand, k, mode, temperature):
  logp = logprobs_lib.next_token_logprobs(logits, tokens)
  ent = jnp.pad(logprobs_lib.entropy(logits[:, :-1]), ((0, 0), (1, 0)))
  a = anchors_lib.select_anchors(rng, ent, cand, k, mode, temperature)
  return logp, ent, a


def grow(
  sampler,
  tokenizer,
  env: multiturn.ToolEnvironment,
  prompt_tokens: np.ndarray,
  prompt_mask: np.ndarray,
  experts: Sequence[Expert],
  rng: jax.Array,
  config: multiturn.MultiTurnConfig,
  num_anchors: int,
  branches_per_anchor: int,
  expert_len: int,
  anchor_mode: str = 'topk',
  anchor_temperature: float = 1.0,
) -> Branches:
  """Grows `num_anchors * branches_per_anchor` branches per expert.

  Args:
    sampler: the policy's `Sampler` (capacity >= P + expert_len +
      config.response_len).
    tokenizer: the tokenizer.
    env: the tool environment.
    prompt_tokens: `[G, P]` left-padded prompts.
    prompt_mask: `[G, P]` bool.
    experts: G `Expert`s.
    rng: PRNG key.
    config: the tool loop's settings (`max_calls` bounds prefix + branch).
    num_anchors: K >= 1 (every expert needs >= K candidate positions).
    branches_per_anchor: B >= 1.
    expert_len: E, experts are right-padded to it.
    anchor_mode: `'topk'` or `'sampled'`.
    anchor_temperature: tau of `'sampled'`.

  Returns:
    `Branches` with response width `W = E + config.response_len`.
  """
  g, p = prompt_tokens.shape
  k, bb = num_anchors, branches_per_anchor
  if k < 1 or bb < 1:
    raise ValueError(
      f'num_anchors={k} and branches_per_anchor={bb} must be >= 1'
    )
  if len(experts) != g:
    raise ValueError(f'{len(experts)} experts for {g} prompts')
  e = expert_len
  w = e + config.response_len
  pad = tokenizer.pad_id
  ex_tok = np.full((g, e), pad, np.int32)
  ex_mask = np.zeros((g, e), bool)
  ex_pol = np.zeros((g, e), bool)
  cand = np.zeros((g, e), bool)
  for i, x in enumerate(experts):
    n = len(x.ids)
    if n > e:
      raise ValueError(f'expert {i} has {n} tokens > expert_len={e}')
    ex_tok[i, :n], ex_mask[i, :n], ex_pol[i, :n] = x.ids, True, x.policy
    cand[i, :n] = anchor_candidates(x)
    if cand[i].sum() < k:
      raise ValueError(
        f'expert {i} has {int(cand[i].sum())} anchor positions < '
        f'num_anchors={k}'
      )
  tokens = np.concatenate([prompt_tokens, ex_tok], 1)
  mask = np.concatenate([prompt_mask, ex_mask], 1)
  state, logits = fork_lib.teacher_force(sampler, tokens, mask)
  k_anchor, k_roll = jax.random.split(rng)
  # (anchors, entropy and forced log-probs in one jitted call)
  cand_full = np.concatenate([np.zeros((g, p), bool), cand], 1)
  logp, ent, a_full = _anchors(
    k_anchor,
    logits,
    jnp.asarray(tokens),
    jnp.asarray(cand_full),
    k=k,
    mode=anchor_mode,
    temperature=float(anchor_temperature),
  )
  logp = np.asarray(logp)[:, p:]
  ent = np.asarray(ent)[:, p:]
  anchors = np.asarray(a_full) - p  # [G, K] positions in the expert
  n_prompt = prompt_mask.sum(1)
  src = np.repeat(np.arange(g), k * bb)
  pos = np.repeat(anchors.reshape(-1), bb)  # [G*K*B]
  forked = fork_lib.fork(state, logits, mask, src, n_prompt[src] + pos)
  calls_before = np.stack(
    [np.pad(x.calls_before, (0, e - len(x.ids)), mode='edge') for x in experts]
  )
  left = np.maximum(config.max_calls - calls_before[src, pos], 0)
  # The expert text of each branch's current turn (since its last
  # observation), so a prefix cut inside a call is parsed whole.
  heads = []
  for i, a in zip(src, pos, strict=True):
    obs = np.nonzero(~ex_pol[i, :a])[0]
    start = int(obs[-1]) + 1 if obs.size else 0
    heads.append(ex_tok[i, start:a].tolist())
  cont = multiturn.continue_rollout(
    sampler, forked, tokenizer, env, k_roll, config, calls_left=left,
    turn_prefixes=heads,
  )  # fmt: skip
  j = len(src)
  out_tok = np.full((j, w), pad, np.int32)
  resp = np.zeros((j, w), bool)
  loss = np.zeros((j, w), bool)
  prefix = np.zeros((j, w), bool)
  old = np.zeros((j, w), np.float32)
  texts = []
  for r in range(j):
    i, a = src[r], pos[r]
    n = int(cont.response_mask[r].sum())
    out_tok[r, :a] = ex_tok[i, :a]
    out_tok[r, a : a + n] = cont.tokens[r, :n]
    resp[r, : a + n] = True
    loss[r, :a] = ex_pol[i, :a]
    loss[r, a : a + n] = cont.loss_mask[r, :n]
    prefix[r, :a] = True
    old[r, :a] = logp[i, :a]
    old[r, a : a + n] = cont.logprobs[r, :n]
    texts.append(tokenizer.decode(out_tok[r, : a + n]))
  pad_w = ((0, 0), (0, w - e))
  return Branches(
    expert_tokens=np.pad(ex_tok, pad_w, constant_values=pad),
    expert_loss=np.pad(ex_pol & ex_mask, pad_w),
    expert_logprobs=np.pad(np.where(ex_mask, logp, 0.0), pad_w),
    tokens=out_tok,
    response_mask=resp,
    loss_mask=loss,
    prefix_mask=prefix,
    old_logprobs=old,
    texts=texts,
    anchors=anchors,
    entropy=np.where(ex_mask, ent, 0.0),
    num_calls=cont.num_calls,
    num_failed=cont.num_failed,
  )
