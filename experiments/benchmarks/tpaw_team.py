"""Benchmark: TPAW step time, team log-probs precomputed vs recomputed.

On the TPAW default experiment model (a `common.models` Transformer, d_model
64, 2 layers, d_ff 128, vocabulary ~180), one jitted TPAW training step
(forward of chosen + rejected, backward, AdamW update) on a batch of
`--batch` triplets with prompts of 12 and responses of 26 tokens is timed
two ways, same batch, same loss:

* precomputed: the team's `log pi_j(y|x)`, `log pi_j(y'|x)` come in the
  batch (`tpaw.team_logprobs` once per iteration; what `run_selfplay`
  does), so the step runs only the current model;
* recomputed: the step runs `N_max` extra reference forwards (2 sequences
  each) of the frozen members before the loss
  (`tpaw.team.recompute_team_logps`).

Both are checked to give the same loss. Timed after a warm-up call
(compilation excluded), best of `--repeats` steps taken round-robin (the
machine may be shared). Run:

  python -m experiments.benchmarks.tpaw_team [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import tpaw
from common import models
from tpaw import team as team_lib


def _batch(rng, b, p, r, vocab, n_max):
  prompt_mask = np.arange(p)[None] >= p - rng.integers(4, p + 1, (b, 1))
  target_mask = np.arange(r)[None] < rng.integers(8, r + 1, (b, 1))
  gen_mask = np.arange(r)[None] < rng.integers(8, r + 1, (b, 1))
  return {
    'prompt': rng.integers(3, vocab, (b, p)).astype(np.int32),
    'prompt_mask': prompt_mask,
    'target': rng.integers(3, vocab, (b, r)).astype(np.int32),
    'target_mask': target_mask,
    'generated': rng.integers(3, vocab, (b, r)).astype(np.int32),
    'generated_mask': gen_mask,
    'team_mask': np.ones((b, n_max), bool),
    'sft_target_logps': np.zeros((b,), np.float32),
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--n_max', type=int, default=3)
  parser.add_argument('--repeats', type=int, default=20)
  parser.add_argument('--smoke', action='store_true', help='a few seconds')
  args = parser.parse_args(argv)
  repeats = 3 if args.smoke else args.repeats
  vocab, p, r = 180, 12, 26
  cfg = models.get_preset(
    'tiny', vocab_size=vocab, d_model=64, n_layers=2, d_ff=128,
    max_seq_len=p + r,
  )  # fmt: skip
  graphdef, params = models.split(models.Transformer(cfg, rngs=nnx.Rngs(0)))
  members = [
    models.split(models.Transformer(cfg, rngs=nnx.Rngs(j + 1)))[1]
    for j in range(args.n_max)
  ]
  batch = _batch(np.random.default_rng(0), args.batch, p, r, vocab, args.n_max)
  pre = tpaw.team_logprobs(
    graphdef, members, batch, args.n_max, batch_size=args.batch
  )
  pre_batch = {**batch, **pre}
  tx = optax.adamw(3e-4)
  hyper = {'lam': jnp.float32(0.1), 'eta': jnp.float32(6.0),
           'gamma': jnp.float32(0.5)}  # fmt: skip
  loss_fn = tpaw.make_loss(models.apply_fn(graphdef))

  def update(params, opt_state, b):
    (loss, _), g = jax.value_and_grad(loss_fn, has_aux=True)(params, b, hyper)
    upd, opt_state = tx.update(g, opt_state, params)
    return optax.apply_updates(params, upd), opt_state, loss

  @jax.jit
  def step_pre(params, opt_state, b):
    return update(params, opt_state, b)

  @jax.jit
  def step_recompute(params, opt_state, members, b):
    t, g = team_lib.recompute_team_logps(graphdef, members, b)
    b = {**b, 'team_target_logps': t, 'team_generated_logps': g}
    return update(params, opt_state, b)

  opt_state = tx.init(params)
  runs = {
    'precomputed': lambda: step_pre(params, opt_state, pre_batch),
    'recomputed': lambda: step_recompute(params, opt_state, members, batch),
  }
  losses = {k: float(jax.block_until_ready(f())[2]) for k, f in runs.items()}
  np.testing.assert_allclose(
    losses['precomputed'], losses['recomputed'], rtol=1e-4, atol=1e-4
  )
  times = {k: [] for k in runs}
  for _ in range(repeats):
    for name, f in runs.items():
      t0 = time.perf_counter()
      jax.block_until_ready(f())
      times[name].append(time.perf_counter() - t0)
  for name, ts in times.items():
    print(
      f'{name:>12}: {1e3 * min(ts):.3f} ms/step '
      f'(median {1e3 * statistics.median(ts):.3f}); loss {losses[name]:.6f}'
    )
  ratio = min(times['recomputed']) / min(times['precomputed'])
  print(
    f'tpaw_team: ratio={ratio:.2f} (step time recomputing {args.n_max} '
    'reference forwards / with team log-probs precomputed)'
  )


if __name__ == '__main__':
  main()
