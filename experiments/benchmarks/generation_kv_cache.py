"""Benchmark: KV-cache generation vs recomputing the full prefix each token.

Both paths generate greedily from the same model and the same left-padded
prompt batch, each in one jitted loop:

* KV cache: `common.sampling.Sampler` (prefill once, then one token per step
  through the cache, `while_loop`);
* recompute: a `fori_loop` that runs the model over the whole fixed-size
  buffer `[B, P + N]` (prompt plus the tokens generated so far, the rest
  masked) at every step and takes the logits of the last real position.
  With static shapes each step costs a forward over P + N tokens; a
  recompute over only the current prefix would cost P + i (about half the
  work on average for P << N), so the ratio is also printed against that
  idealised bound.

Timed after a warm-up call (compilation excluded), median of `--repeats`.
The token sequences of the two paths are checked equal. Run:

  python -m experiments.benchmarks.generation_kv_cache [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common import models
from common import sampling


def _recompute_fn(graphdef, prompt_len, new_tokens):
  """Jitted greedy generation that reruns the full buffer every step."""

  @jax.jit
  def run(params, tokens, mask):
    model = nnx.merge(graphdef, params)
    b = tokens.shape[0]
    buf = jnp.concatenate(
      [tokens, jnp.zeros((b, new_tokens), tokens.dtype)], axis=1
    )
    buf_mask = jnp.concatenate([mask, jnp.zeros((b, new_tokens), bool)], axis=1)

    def body(i, carry):
      buf, buf_mask = carry
      logits = model(buf, attention_mask=buf_mask).logits
      last = jax.lax.dynamic_index_in_dim(
        logits, prompt_len + i - 1, 1, keepdims=False
      )
      tok = jnp.argmax(last, axis=-1).astype(buf.dtype)
      buf = jax.lax.dynamic_update_index_in_dim(buf, tok, prompt_len + i, 1)
      buf_mask = jax.lax.dynamic_update_index_in_dim(
        buf_mask, jnp.ones((b,), bool), prompt_len + i, 1
      )
      return buf, buf_mask

    buf, _ = jax.lax.fori_loop(0, new_tokens, body, (buf, buf_mask))
    return buf[:, prompt_len:]

  return run


def _time(fn, repeats):
  jax.block_until_ready(fn())  # warm-up (compile)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--preset', default='small')
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--prompt-len', type=int, default=32)
  parser.add_argument('--new-tokens', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument(
    '--smoke', action='store_true', help='minimal sizes (tests)'
  )
  args = parser.parse_args(argv)
  if args.smoke:
    args.preset, args.batch, args.prompt_len = 'tiny', 2, 4
    args.new_tokens, args.repeats = 4, 1

  config = models.get_preset(args.preset)
  model = models.Transformer(config, rngs=nnx.Rngs(0))
  b, p, n = args.batch, args.prompt_len, args.new_tokens
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, config.vocab_size, (b, p)).astype(np.int32)
  mask = np.ones((b, p), bool)
  for r in range(b):  # left padding: row r has r pads (at most p // 2)
    mask[r, : min(r, p // 2)] = False
  tokens, mask = jnp.asarray(tokens), jnp.asarray(mask)

  sampler = sampling.Sampler(model, capacity=p + n)
  gen_cfg = sampling.GenerationConfig(n, temperature=0.0)
  key = jax.random.key(0)
  kv_fn = lambda: sampler.sample(tokens, mask, key, gen_cfg).tokens
  rec = _recompute_fn(sampler.graphdef, p, n)
  rec_fn = lambda: rec(sampler.params, tokens, mask)

  same = np.array_equal(np.asarray(kv_fn()), np.asarray(rec_fn()))
  t_kv = _time(kv_fn, args.repeats)
  t_rec = _time(rec_fn, args.repeats)
  shape = (
    f'{args.preset} d{config.d_model} L{config.n_layers}, batch {b}, '
    f'prompt {p}, {jax.default_backend()}'
  )
  speedup = t_rec / t_kv
  ideal = speedup * (p + (n + 1) / 2) / (p + n)
  print(
    f'KV-cache: {t_kv * 1e3:.1f} ms; full recompute: {t_rec * 1e3:.1f} '
    f'ms for {n} tokens x {b} rows; identical tokens: {same}'
  )
  print(
    f'against a variable-length recompute (prefix P + i per step, an '
    f'idealised bound): {ideal:.2f}x'
  )
  print(
    f'generation_kv_cache: speedup={speedup:.2f}x (KV-cache vs '
    f'full-prefix recompute, {n} new tokens, {shape})'
  )
  return {
    'speedup': speedup,
    'identical_tokens': same,
    'kv_s': t_kv,
    'recompute_s': t_rec,
  }


if __name__ == '__main__':
  main()
