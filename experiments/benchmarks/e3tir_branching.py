"""Benchmark: branch sampling from a forked KV cache vs re-prefilling.

E3-TIR grows B branches from each of K anchors on a teacher-forced expert
trajectory. Both paths sample the same greedy continuations of the same
prefixes:

* fork: one forced pass over `prompt + expert` (which E3-TIR needs anyway
  for the anchor entropies), then `common.sampling.fork.fork` cuts the
  cache at each anchor (no prefix recomputation) and `generate` runs;
* re-prefill: each branch's prefix `prompt + expert[:a]` is prefilled from
  scratch (`Sampler.prefill`, one left-padded batch), then `generate`.

Timed after a warm-up call (compilation excluded), median of `--repeats`;
the timed region is the prefix work plus generation, not the forced pass
(shared). The generated tokens of the two paths are checked equal. Prints
generated tokens/s of each and the ratio. Run:

  python -m experiments.benchmarks.e3tir_branching [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np
from flax import nnx

from common import models
from common.sampling import fork
from common.sampling import sampler as sampler_lib


def _time(fn, repeats):
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--preset', default='small')
  parser.add_argument('--experts', type=int, default=4)
  parser.add_argument('--anchors', type=int, default=4)
  parser.add_argument('--branches', type=int, default=4)
  parser.add_argument('--prompt-len', type=int, default=32)
  parser.add_argument('--expert-len', type=int, default=192)
  parser.add_argument('--new-tokens', type=int, default=32)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--smoke', action='store_true', help='minimal sizes')
  args = parser.parse_args(argv)
  if args.smoke:
    args.preset, args.experts, args.anchors, args.branches = 'tiny', 2, 2, 2
    args.prompt_len, args.expert_len, args.new_tokens = 4, 16, 4
    args.repeats = 1
  config = models.get_preset(args.preset)
  model = models.Transformer(config, rngs=nnx.Rngs(0))
  g, k, bb = args.experts, args.anchors, args.branches
  p, e, n = args.prompt_len, args.expert_len, args.new_tokens
  rng = np.random.default_rng(0)
  tokens = rng.integers(1, config.vocab_size, (g, p + e)).astype(np.int32)
  mask = np.ones((g, p + e), bool)
  # Anchors spread over the expert part (as entropy anchors would be).
  anchors = np.sort(
    np.stack([rng.choice(np.arange(1, e), k, replace=False) for _ in range(g)]),
    axis=1,
  )
  src = np.repeat(np.arange(g), k * bb)
  lengths = p + np.repeat(anchors.reshape(-1), bb)
  sampler = sampler_lib.Sampler(model, capacity=p + e + n)
  cfg = sampler_lib.GenerationConfig(n, temperature=0.0)
  key = jax.random.key(0)
  state, logits = fork.teacher_force(sampler, tokens, mask)
  jax.block_until_ready(logits)

  def forked():
    st = fork.fork(state, logits, mask, src, lengths)
    return sampler.generate(st, key, cfg)[1].tokens

  width = int(lengths.max())
  pre_t = np.zeros((len(src), width), np.int32)
  pre_m = np.zeros((len(src), width), bool)
  for j, (i, ln) in enumerate(zip(src, lengths, strict=True)):
    pre_t[j, width - ln :] = tokens[i, :ln]
    pre_m[j, width - ln :] = True

  def reprefill():
    st = sampler.prefill(pre_t, pre_m)
    return sampler.generate(st, key, cfg)[1].tokens

  same = np.array_equal(np.asarray(forked()), np.asarray(reprefill()))
  t_fork = _time(forked, args.repeats)
  t_pre = _time(reprefill, args.repeats)
  gen = len(src) * n
  print(
    f'{args.preset} d{config.d_model} L{config.n_layers}; {g} experts x '
    f'{k} anchors x {bb} branches, prompt {p}, expert {e}, {n} new tokens, '
    f'{jax.default_backend()}'
  )
  print(
    f'fork: {t_fork * 1e3:.1f} ms ({gen / t_fork:.0f} tokens/s); '
    f're-prefill: {t_pre * 1e3:.1f} ms ({gen / t_pre:.0f} tokens/s); '
    f'same tokens: {same}'
  )
  if not same:
    raise SystemExit('fork and re-prefill generated different tokens')
  print(
    f'e3tir_branching: speedup={t_pre / t_fork:.2f}x (branch sampling from '
    'the forked KV cache of the teacher-forced expert vs re-prefilling each '
    "branch's prefix; generated tokens/s ratio)"
  )


if __name__ == '__main__':
  main()
