"""Benchmark: compile time of a deep model, scanned vs unrolled layers.

A 28-layer model of tiny width (Qwen2.5-1.5B's depth, d_model 64) is
compiled twice, with `LMConfig.scan_layers` off (a Python loop: XLA sees 28
copies of the block) and on (one `jax.lax.scan`): the training step
(AdamW, `value_and_grad`), and KV-cache generation (`common.sampling`,
prefill + the decoding `while_loop`). Printed: seconds of `lower` +
`compile` for each. Run:

  python -m experiments.benchmarks.lm_scan_compile [--layers 28]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from common import models
from common import sampling


def _compile_seconds(config, batch, seq_len, new_tokens):
  model = models.Transformer(config, rngs=nnx.Rngs(0))
  graphdef, params = models.split(model)
  tx = optax.adamw(1e-3)
  opt_state = tx.init(params)
  tokens = jnp.zeros((batch, seq_len), jnp.int32)
  mask = jnp.ones((batch, seq_len), bool)

  def step(params, opt_state, tokens, mask):
    def loss_fn(p):
      logits = models.apply_fn(graphdef)(p, tokens, mask)
      return jnp.mean(jax.nn.logsumexp(logits, -1))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  start = time.perf_counter()
  jax.jit(step).lower(params, opt_state, tokens, mask).compile()
  train_s = time.perf_counter() - start

  cfg = sampling.GenerationConfig(max_new_tokens=new_tokens, temperature=0.0)

  def generate(params, tokens, mask):
    m = nnx.merge(graphdef, params)
    state = sampling.prefill(m, tokens, mask, seq_len + new_tokens)
    return sampling.generate(m, state, jax.random.key(0), cfg)[1].tokens

  start = time.perf_counter()
  jax.jit(generate).lower(params, tokens, mask).compile()
  gen_s = time.perf_counter() - start
  return train_s, gen_s


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--layers', type=int, default=28)
  parser.add_argument('--batch', type=int, default=2)
  parser.add_argument('--seq-len', type=int, default=32)
  parser.add_argument('--new-tokens', type=int, default=8)
  args = parser.parse_args(argv)
  base = models.get_preset(
    'tiny', n_layers=args.layers, d_model=64, d_ff=128, qkv_bias=True
  )
  times = {}
  for scan in (False, True):
    times[scan] = _compile_seconds(
      base.replace(scan_layers=scan), args.batch, args.seq_len, args.new_tokens
    )
  (ut, ug), (st, sg) = times[False], times[True]
  print(
    f'compile seconds, {args.layers} layers: train step unrolled {ut:.1f} '
    f'scanned {st:.1f}; generation unrolled {ug:.1f} scanned {sg:.1f} '
    f'(load average {os.getloadavg()[0]:.1f})'
  )
  print(
    f'lm_scan_compile: speedup={ut / st:.1f}x (unrolled / scanned compile '
    f'time of the training step, {args.layers} layers d64; generation '
    f'{ug / sg:.1f}x)'
  )
  return {'train': (ut, st), 'generate': (ug, sg)}


if __name__ == '__main__':
  main()
