"""Benchmark: step-time overhead of `nspo.project` and estimation throughput.

On the NSPO default experiment model (a `common.models` Transformer of the
`experiments/nspo/configs/default.py` shape, d_model 64, 2 layers, d_ff 128,
word vocabulary ~190), one jitted training step (forward, backward,
optimizer update, parameter update) on a `[64, 23]` token batch is timed
with three optimizers:

* `optax.adamw(lr)`;
* `optax.chain(optax.adamw(lr), nspo.project(spaces))` with the
  representation `auto` picks per site (low-rank bases where cheaper);
* the same with every projector dense (`[L, d, d]` matrices).

The null spaces are estimated on the model's own activations
(`nspo.capture.collect` on random token batches, relative threshold 1e-3),
so their ranks are realistic; estimation throughput is printed in tokens/s.
`--d_model/--d_ff/--n_layers` scale the model (e.g. to see the low-rank
path win at larger widths). Timed after a warm-up call (compilation
excluded), best of `--repeats` steps taken round-robin over the three
optimizers (the machine may be shared). Run:

  python -m experiments.benchmarks.nspo_overhead [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np
import optax
from flax import nnx

import nspo
from common import models
from common.train import sft as sft_lib
from nspo import capture


def _step_fn(model_def, tx):
  loss = sft_lib.make_sft_loss(models.apply_fn(model_def))

  @jax.jit
  def step(params, opt_state, batch):
    (_, _), grads = jax.value_and_grad(loss, has_aux=True)(params, batch, None)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  return step


def _time_interleaved(runs, repeats):
  """Best-of-`repeats` seconds per step of each run, measured round-robin.

  Args:
    runs: `{name: (step, params, opt_state, batch)}`.
    repeats: timed steps per run.

  Round-robin order spreads load changes on a shared machine over all runs
  alike; the minimum is the least disturbed measurement (as `timeit`).
  """
  state = {}
  for name, (step, params, opt_state, batch) in runs.items():
    params, opt_state = step(params, opt_state, batch)  # compile + warm up
    jax.block_until_ready(params)
    state[name] = (params, opt_state)
  times = {name: [] for name in runs}
  for _ in range(repeats):
    for name, (step, _, _, batch) in runs.items():
      params, opt_state = state[name]
      t0 = time.perf_counter()
      params, opt_state = step(params, opt_state, batch)
      jax.block_until_ready(params)
      times[name].append(time.perf_counter() - t0)
      state[name] = (params, opt_state)
  return {n: (min(t), statistics.median(t)) for n, t in times.items()}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--vocab', type=int, default=190)
  parser.add_argument('--d_model', type=int, default=64)
  parser.add_argument('--d_ff', type=int, default=128)
  parser.add_argument('--n_layers', type=int, default=2)
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--seq', type=int, default=23)
  parser.add_argument('--repeats', type=int, default=30)
  parser.add_argument('--alpha', type=float, default=1e-3)
  parser.add_argument('--smoke', action='store_true', help='a few seconds')
  args = parser.parse_args(argv)
  if args.smoke:
    args.repeats, args.batch = 3, 8
  cfg = models.get_preset(
    'tiny',
    vocab_size=args.vocab,
    d_model=args.d_model,
    d_ff=args.d_ff,
    n_layers=args.n_layers,
    max_seq_len=max(args.seq, 8),
  )
  model_def, params = models.split(models.Transformer(cfg, rngs=nnx.Rngs(0)))
  rng = np.random.default_rng(0)
  tokens = rng.integers(4, args.vocab, (args.batch, args.seq)).astype(np.int32)
  mask = np.ones_like(tokens, bool)
  batch = {
    'tokens': tokens,
    'attention_mask': mask,
    'loss_mask': np.ones_like(tokens, np.float32),
  }

  sites = capture.SITES
  n_est = 4 if args.smoke else 16
  est_batches = [
    (rng.integers(4, args.vocab, tokens.shape).astype(np.int32), mask)
    for _ in range(n_est)
  ]
  stats, info = capture.collect(
    models.capture_fn(model_def, sites),
    params,
    est_batches,
    capture.site_dims(cfg, sites),
  )
  rule = nspo.relative(args.alpha)
  auto = nspo.estimate(stats, rule, 'auto', allow_frozen=True)
  dense = nspo.estimate(stats, rule, 'dense', allow_frozen=True)

  lr = 1e-3
  txs = {
    'adamw': optax.adamw(lr),
    'adamw+project(auto)': optax.chain(optax.adamw(lr), nspo.project(auto)),
    'adamw+project(dense)': optax.chain(optax.adamw(lr), nspo.project(dense)),
  }
  runs = {
    name: (_step_fn(model_def, tx), params, tx.init(params), batch)
    for name, tx in txs.items()
  }
  timed = _time_interleaved(runs, args.repeats)
  results = {name: best for name, (best, _) in timed.items()}
  for name, (best, median) in timed.items():
    print(f'{name:>22}: {1e3 * best:.3f} ms/step (median {1e3 * median:.3f})')
  kinds = {s: type(p).__name__ for s, p in sorted(auto.items())}
  print(f'auto representations: {kinds}')
  print(
    f'null-space estimation: {info["tokens_per_sec"]:.0f} tokens/s '
    f'({int(info["tokens"])} tokens, {len(sites)} sites, jitted streaming)'
  )
  dense_ratio = results['adamw+project(dense)'] / results['adamw']
  lowrank_vs_dense = (
    results['adamw+project(auto)'] / results['adamw+project(dense)']
  )
  print(f'nspo_overhead dense: ratio={dense_ratio:.3f}')
  print(f'nspo_overhead auto vs dense: ratio={lowrank_vs_dense:.3f}')
  ratio = results['adamw+project(auto)'] / results['adamw']
  print(
    f'nspo_overhead: ratio={ratio:.3f} (step time of adamw+nspo.project / '
    f'adamw, d_model={args.d_model} L={args.n_layers} d_ff={args.d_ff}, '
    f'batch {args.batch}x{args.seq}; CPU, shared machine)'
  )


if __name__ == '__main__':
  main()
