"""Stage 3: the real runtime on devices: planned DHP steps of a tiny
transformer against the same steps on one device.

It checks that DHP gives the single-device losses and counts the compiled
executables; on simulated CPU devices its wall-clock is not a training
speedup and is not reported as one. The result is one cached unit.
"""

from __future__ import annotations

import time

import jax
import numpy as np
import optax

from common import metrics as cmetrics
from dhp import cost_model as cm
from dhp import lengths as ln
from dhp import model as model_lib
from dhp import planner as pl
from dhp import runtime as rt
from dhp.experiment import config as config_lib


def _token_batch(rng, lens, vocab):
  """Arithmetic sequences mod vocab: learnable next-token structure."""
  out = []
  for n in lens:
    start, step = rng.integers(0, vocab), rng.integers(1, 4)
    out.append((start + step * np.arange(n)) % vocab)
  return out


def _run_steps(config):
  """Trains the tiny model with DHP and on one device; compares losses."""
  tc = config.train
  mcfg = config_lib.model_config(tc)
  cost = cm.CostModel(
    a1=tc.cost_a1,
    a2=tc.cost_a2,
    eff_half=tc.cost_eff_half,
    num_layers=mcfg.num_layers,
  )
  # config.validate_config checked that num_devices devices exist.
  n = min(8, len(jax.devices())) if tc.num_devices is None else tc.num_devices
  opts = {'xla_backend_optimization_level': 0} if tc.fast_compile else None
  runtime = rt.DHPRuntime(
    mcfg, optax.adam(tc.learning_rate), jax.devices()[:n], opts
  )
  rng = np.random.default_rng(config.seed)
  batches, plans = [], []
  for step in range(tc.steps):
    lens = ln.long_tail(
      tc.batch_size,
      config.seed + 1000 + step,
      mu=tc.len_mu,
      sigma=tc.len_sigma,
      min_len=4,
      max_len=tc.max_len,
    )
    batches.append(_token_batch(rng, lens, mcfg.vocab_size))
    plans.append(pl.plan_round(lens, n, tc.capacity, cost))
    if plans[-1] is None:
      raise ValueError(
        f'train step {step}: batch of {lens.sum()} tokens does not fit '
        f'{n} x {tc.capacity}; raise config.train.capacity.'
      )
  params0 = model_lib.init_params(jax.random.key(config.seed), mcfg)
  params, opt_state = runtime.init(params0)
  start = time.perf_counter()
  for step in range(min(tc.compile_warmup_steps, tc.steps)):
    lens = [len(s) for s in batches[step]]
    runtime.warmup(runtime.group_shapes(lens, plans[step]), params)
  warm_s = time.perf_counter() - start
  compiled_warm = len(runtime.cache)
  runtime.cache.reset_counts()
  tx = optax.adam(tc.learning_rate)
  ref_params, ref_opt = params0, tx.init(params0)
  rows, dhp_losses, ref_losses = [], [], []
  for step in range(tc.steps):
    params, opt_state, loss = runtime.step(
      params, opt_state, batches[step], plans[step]
    )
    ref_loss, grads = rt.reference_loss_and_grads(
      ref_params, batches[step], mcfg
    )
    updates, ref_opt = tx.update(grads, ref_opt, ref_params)
    ref_params = optax.apply_updates(ref_params, updates)
    if not np.isfinite(ref_loss):
      raise FloatingPointError(f'non-finite reference loss at step {step}.')
    dhp_losses.append(loss)
    ref_losses.append(ref_loss)
    degs = '+'.join(str(d) for d in sorted(plans[step].degrees, reverse=True))
    rows.append(
      [
        step,
        round(loss, 6),
        round(ref_loss, 6),
        f'{abs(loss - ref_loss):.1e}',
        degs,
        len(batches[step]),
      ]
    )
  diffs = np.abs(np.array(dhp_losses) - np.array(ref_losses))
  return {
    'rows': rows,
    'dhp_losses': dhp_losses,
    'ref_losses': ref_losses,
    'max_loss_diff': float(diffs.max()),
    'executables_after_warmup': compiled_warm,
    'executables_total': len(runtime.cache),
    'hit_rate_after_warmup': runtime.cache.hit_rate,
    'hits': runtime.cache.hits,
    'misses': runtime.cache.misses,
    'warmup_compile_s': warm_s,
    'compile_s_total': runtime.cache.compile_seconds,
  }


def runtime_check(config, cache_root):
  """DHP steps vs single-device steps (cached; see ``_run_steps``).

  Returns:
    {'rows', 'dhp_losses', 'ref_losses', 'max_loss_diff',
    'executables_after_warmup', 'executables_total',
    'hit_rate_after_warmup', 'hits', 'misses', 'warmup_compile_s',
    'compile_s_total'}.
  """
  cache = cmetrics.ResultCache(
    cache_root,
    {
      'seed': config.seed,
      'train': config.train,
      'num_devices': len(jax.devices()),
    },
  )
  return cache.get_or_compute('runtime_check', lambda: _run_steps(config))
