"""Benchmark: PiCA multi-turn search rollouts, KV cache vs prefix recompute.

Both paths run the same agent loop (`pica.rollout.rollout`: generate until
`</search>` / `</answer>`, BM25 top-k, append `<information>`, continue, up
to `max_turns`) on the same model, questions and retriever, greedily:

* KV cache: `common.sampling.Sampler` (prefill once; every generated or
  appended token goes through the cache once);
* recompute: `RecomputeSampler`, the same interface backed by a token
  buffer `[B, C]`; every generated token reruns the model over the whole
  fixed-size buffer (the rest masked) and reads the last real position,
  the way a cache-less agent loop regenerates (a `while_loop` that stops
  when every row has stopped, like the sampler's). With static shapes a
  step costs a forward over C tokens, not the current prefix length, so
  the ratio overstates the gain over an ideal variable-length recompute.

The policy is a tiny LM briefly SFT-ed on golden traces of the tiny
knowledge world so it issues searches. Reported: generated tokens/s of
each path (compilation excluded by a warm-up call), whether the greedy
responses agree, and the time of one RL step split into rollout (KV) /
reward (hazard-model forward, step + outcome rewards) / update (one
policy-gradient step with `common.rl.make_policy_loss`). Run:

  python -m experiments.benchmarks.pica_rollout [--smoke]
"""

from __future__ import annotations

import argparse
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from common import models
from common import retrieval as retriever_lib
from common import sampling
from common import synthetic
from common.rl import policy_loss
from common.sampling import filters
from common.sampling import sampler as sampler_lib
from common.train import sft
from pica import hazard
from pica import rewards
from pica import rollout as rollout_lib


class RecomputeState(NamedTuple):
  buffer: jax.Array  # [B, C] tokens
  valid: jax.Array  # [B, C] bool
  finished: jax.Array  # [B] bool


class RecomputeSampler:
  """`Sampler`'s interface without a KV cache (full forward per token)."""

  def __init__(self, model: models.Transformer, capacity: int):
    self.graphdef, self.params = models.split(model)
    self.capacity = capacity
    self._gen = jax.jit(self._generate, static_argnums=3)

  def prefill(self, tokens, mask):
    b, p = tokens.shape
    buf = jnp.zeros((b, self.capacity), jnp.int32).at[:, :p].set(tokens)
    valid = jnp.zeros((b, self.capacity), bool).at[:, :p].set(mask)
    return RecomputeState(buf, valid, jnp.zeros((b,), bool))

  def append(self, state, tokens, mask):
    buf, valid = np.array(state.buffer), np.array(state.valid)
    tokens, mask = np.asarray(tokens), np.asarray(mask)
    for i in range(buf.shape[0]):
      ids = tokens[i][mask[i]]
      end = int(np.nonzero(valid[i])[0].max()) + 1
      buf[i, end : end + len(ids)] = ids
      valid[i, end : end + len(ids)] = True
    return state._replace(buffer=jnp.asarray(buf), valid=jnp.asarray(valid))

  def generate(self, state, rng, config):
    return self._gen(self.params, state, rng, config)

  def _generate(self, params, state, rng, config):
    apply = models.apply_fn(self.graphdef)
    b, n = state.buffer.shape[0], config.max_new_tokens
    stops = jnp.asarray([s[-1] for s in config.stop_sequences] or [-1])
    eos = jnp.asarray(config.eos_ids or (-1,))
    cols = jnp.arange(self.capacity)

    def cond(carry):
      return (carry[0] < n) & jnp.any(carry[3])

    def body(carry):
      i, buf, valid, active, toks, logps, gmask, reason = carry
      logits = apply(params, buf, valid)
      last = jnp.max(jnp.where(valid, cols, 0), axis=1)
      logits = jnp.take_along_axis(logits, last[:, None, None], 1)[:, 0]
      tok = filters.choose_tokens(
        logits,
        jax.random.fold_in(rng, i),
        config.temperature,
        config.top_k,
        config.top_p,
      )
      logp = jnp.take_along_axis(
        jax.nn.log_softmax(logits, -1), tok[:, None], -1
      )[:, 0]
      toks = toks.at[:, i].set(jnp.where(active, tok, config.pad_id))
      logps = logps.at[:, i].set(jnp.where(active, logp, 0.0))
      gmask = gmask.at[:, i].set(active)
      write = active[:, None] & (cols[None, :] == last[:, None] + 1)
      buf = jnp.where(write, tok[:, None], buf)
      valid = valid | write
      is_eos = active & jnp.any(tok[:, None] == eos[None], 1)
      is_stop = active & ~is_eos & jnp.any(tok[:, None] == stops[None], 1)
      reason = jnp.where(
        is_eos,
        sampler_lib.FINISH_EOS,
        jnp.where(is_stop, sampler_lib.FINISH_STOP, reason),
      )
      active = active & ~is_eos & ~is_stop
      return i + 1, buf, valid, active, toks, logps, gmask, reason

    init = (
      jnp.int32(0),
      state.buffer,
      state.valid,
      ~state.finished,
      jnp.full((b, n), config.pad_id, jnp.int32),
      jnp.zeros((b, n)),
      jnp.zeros((b, n), bool),
      jnp.zeros((b,), jnp.int32),
    )
    _, buf, valid, active, toks, logps, gmask, reason = jax.lax.while_loop(
      cond, body, init
    )
    reason = jnp.where(active, sampler_lib.FINISH_LENGTH, reason)
    new = RecomputeState(buf, valid, state.finished | (reason == 1))
    out = sampling.GenerationOutput(toks, logps, gmask, gmask.sum(1), reason)
    return new, out


def _warm_start(model, tok, world, index, steps, batch):
  qs = world.split('train')
  prompts = [
    synthetic.search_prompt(q['question'], instruction=False) for q in qs
  ]
  traces = [
    synthetic.golden_search_trace(
      q,
      world.document_by_id,
      retrieve=lambda s: index.search(s, 1),
      think=False,
    )
    for q in qs
  ]
  data = sft.encode_sft(tok, prompts, traces, max_len=128)
  graphdef, params = models.split(model)
  loss_fn = sft.make_sft_loss(models.apply_fn(graphdef))
  opt = optax.adam(3e-3)
  opt_state = opt.init(params)

  @jax.jit
  def step(params, opt_state, b):
    grads = jax.grad(lambda p: loss_fn(p, b)[0])(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  rng = np.random.default_rng(0)
  for _ in range(steps):
    idx = rng.choice(len(prompts), batch)
    params, opt_state = step(
      params, opt_state, {k: v[idx] for k, v in data.items()}
    )
  return models.merge(graphdef, params)


def _time(fn, repeats):
  fn()  # warm-up / compile
  ts = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = fn()
    ts.append(time.perf_counter() - t0)
  return float(np.median(ts)), out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--max-turns', type=int, default=3)
  parser.add_argument('--new-tokens', type=int, default=24)
  parser.add_argument('--sft-steps', type=int, default=150)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--smoke', action='store_true', help='minimal sizes')
  args = parser.parse_args(argv)
  if args.smoke:
    args.batch, args.max_turns, args.new_tokens = 2, 1, 6
    args.sft_steps, args.repeats = 2, 1

  world = synthetic.build_knowledge_world(synthetic.KnowledgeWorldConfig.tiny())
  tok = synthetic.build_tokenizer(world, extra_tokens=('<step>',))
  index = synthetic.LexicalIndex(world.documents)
  bm25 = retriever_lib.BM25Retriever(world.documents)
  cfg = models.get_preset('tiny', vocab_size=tok.vocab_size)
  model = models.Transformer(cfg, rngs=nnx.Rngs(0))
  model = _warm_start(model, tok, world, index, args.sft_steps, 16)

  qs = world.split('test')[: args.batch]
  prompts = [
    synthetic.search_prompt(q['question'], instruction=False) for q in qs
  ]
  p_len = max(len(tok.encode(p, add_bos=True)) for p in prompts)
  rcfg = rollout_lib.RolloutConfig(
    max_turns=args.max_turns,
    max_new_tokens=args.new_tokens,
    topk=1,
    max_info_tokens=40,
    temperature=0.0,
  )
  cap = rcfg.capacity(p_len)
  kv = sampling.Sampler(model, capacity=cap)
  rec = RecomputeSampler(model, capacity=cap)
  key = jax.random.key(0)

  def run(s):
    return rollout_lib.rollout(s, tok, prompts, bm25, key, rcfg, p_len)

  t_kv, ro_kv = _time(lambda: run(kv), args.repeats)
  t_rec, ro_rec = _time(lambda: run(rec), args.repeats)
  n_gen = int(ro_kv.loss_mask.sum())
  same = float(
    np.mean([a == b for a, b in zip(ro_kv.texts, ro_rec.texts, strict=True)])
  )

  # One RL step: rollout (above), reward (hazard forward + rewards),
  # update (a policy-gradient step on the rollout).
  hz = hazard.HazardModel(
    models.Transformer(cfg, rngs=nnx.Rngs(1)), rngs=nnx.Rngs(2)
  )
  h_graph, h_params = models.split(hz)
  place = tok.token_id('<step>')
  rcfg_r = rewards.RewardConfig()
  gold = [q['golden_answers'] for q in qs]

  @jax.jit
  def hazards(params, tokens, mask, pos):
    return jax.nn.sigmoid(
      models.merge(h_graph, params).step_logits(tokens, mask, pos)
    )

  def reward_fn():
    hi = hazard.insert_placeholders(
      ro_kv.prompt_tokens,
      ro_kv.prompt_mask,
      ro_kv.tokens,
      ro_kv.response_mask,
      ro_kv.search_ends,
      place,
    )
    h = hazards(h_params, hi.tokens, hi.mask, hi.positions)[:, :-1]
    step = rewards.step_rewards(h, ro_kv.search_ends >= 0, rcfg_r)
    out, ok = rewards.outcome_scores(ro_kv.texts, gold, rcfg_r)
    r = rewards.token_rewards(
      out, ok, ro_kv.response_mask, ro_kv.search_ends, step, rcfg_r
    )
    return jax.block_until_ready(r)

  t_rew, tok_rewards = _time(reward_fn, args.repeats)
  graphdef, params = models.split(model)
  loss_fn = policy_loss.make_policy_loss(models.apply_fn(graphdef))
  tx = optax.adam(1e-4)
  opt_state = tx.init(params)
  adv = jnp.cumsum(tok_rewards[:, ::-1], axis=1)[:, ::-1]  # returns-to-go
  batch = {
    'tokens': jnp.concatenate([ro_kv.prompt_tokens, ro_kv.tokens], 1),
    'attention_mask': jnp.concatenate(
      [ro_kv.prompt_mask, ro_kv.response_mask], 1
    ),
    'loss_mask': jnp.concatenate(
      [np.zeros_like(ro_kv.prompt_mask), ro_kv.loss_mask], 1
    ),
    'advantages': jnp.concatenate([jnp.zeros(ro_kv.prompt_mask.shape), adv], 1),
  }

  @jax.jit
  def update(params, opt_state):
    grads = jax.grad(lambda p: loss_fn(p, batch)[0])(params)
    u, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, u), opt_state

  t_upd, _ = _time(
    lambda: jax.block_until_ready(update(params, opt_state)), args.repeats
  )
  speedup = t_rec / t_kv
  shape = (
    f'tiny d{cfg.d_model} L{cfg.n_layers}, batch {args.batch}, '
    f'max_turns {args.max_turns}, {args.new_tokens} tokens/turn, '
    f'{jax.default_backend()}, shared CPU'
  )
  print(
    f'searches per trajectory: {ro_kv.num_searches.mean():.2f}; '
    f'{n_gen} generated tokens; identical greedy responses: {same:.2f}'
  )
  print(
    f'KV cache: {n_gen / t_kv:.1f} tok/s ({t_kv * 1e3:.0f} ms); '
    f'recompute: {n_gen / t_rec:.1f} tok/s ({t_rec * 1e3:.0f} ms)'
  )
  print(
    f'RL step: rollout {t_kv * 1e3:.0f} ms / reward {t_rew * 1e3:.0f} '
    f'ms / update {t_upd * 1e3:.0f} ms'
  )
  print(
    f'pica_rollout: speedup={speedup:.2f}x (KV-cache multi-turn vs '
    f'prefix recompute, {shape})'
  )
  return {
    'speedup': speedup,
    'identical': same,
    'kv_s': t_kv,
    'recompute_s': t_rec,
    'reward_s': t_rew,
    'update_s': t_upd,
  }


if __name__ == '__main__':
  main()
