"""Benchmark: GraftLLM SkillPack compression of one 1024x4096 delta.

A synthetic delta of a GQA k/v projection (`kernel [d_in=4096,
d_out=1024]`, as in Llama-3.1-8B) with a decaying spectrum plus noise, and
calibration inputs with correlated features. Measured, side by side:

* compression time of the layer: SVD + mixed-bit GPTQ (the released code's
  attention setting: rank 1000, 20 x int8, 180 x int4, 800 x int2, groups of
  128, act-order), against round-to-nearest (RTN) with the same quantiser
  and groups (compilation excluded by a warm-up call at the same shapes);
* the relative output error `||x (D - D_hat)|| / ||x D||` of both;
* decompression throughput (packed file -> dense delta, delta parameters/s);
* pack size vs the dense float16 delta;
* a forward `x @ (W + D_hat)`: the decoded low-rank factors on the fly
  (`x W + ((x V) * S) U^T`) vs the merged weights (`x W'`).

  python -m experiments.benchmarks.graftllm_pack [--smoke]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax.numpy as jnp
import numpy as np

from graftllm import compress
from graftllm import fusion
from graftllm import quant
from graftllm import skillpack
from graftllm import svd


def _problem(d_in, d_out, n, seed=0):
  rng = np.random.default_rng(seed)
  k = min(d_in, d_out)
  a, _ = np.linalg.qr(rng.normal(size=(d_in, k)))
  b, _ = np.linalg.qr(rng.normal(size=(d_out, k)))
  s = 1e-3 * np.exp(-np.arange(k) / (k / 8))
  delta = (a * s) @ b.T + 2e-6 * rng.normal(size=(d_in, d_out))
  mix = rng.normal(size=(64, d_in)) / 8
  x = rng.normal(size=(n, 64)) @ mix + rng.normal(size=(n, d_in))
  return delta.astype(np.float32), x.astype(np.float32)


def _timed(fn, repeats=1):
  fn()  # warm-up: compile at these shapes
  t = time.perf_counter()
  for _ in range(repeats):
    out = fn()
  return (time.perf_counter() - t) / repeats, out


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--smoke', action='store_true', help='tiny sizes (tests)')
  args = p.parse_args(argv)
  if args.smoke:
    d_in, d_out, n, rank = 256, 64, 256, 48
    groups = ((8, 2), (4, 6), (2, -1))
  else:
    d_in, d_out, n, rank = 4096, 1024, 2048, 1000
    groups = ((8, 20), (4, 180), (2, 800))
  delta, x = _problem(d_in, d_out, n)
  h = np.asarray(quant.hessian(jnp.asarray(x)), np.float64)
  path = 'layers/0/attn/k_proj/kernel'
  res = {}
  for name in ('gptq', 'rtn'):
    cfg = compress.CompressionConfig(
      attn_rank=rank, attn_bit_groups=groups, group_size=128, quantizer=name
    )
    sec, entry = _timed(
      lambda c=cfg: compress.compress_module(path, delta, c, h)
    )
    pack = skillpack.SkillPack('bench', {path: entry})
    err = np.linalg.norm(x @ (delta - pack.decode()[path])) / np.linalg.norm(
      x @ delta
    )
    res[f'{name}_s'], res[f'{name}_rel_err'], res[name] = sec, float(err), pack
  svd_s, _ = _timed(lambda: svd.truncated_svd(delta, rank=rank))
  res['svd_s'] = svd_s

  pack = res['gptq']
  with tempfile.TemporaryDirectory() as tmp:
    file = os.path.join(tmp, 'k.safetensors')
    file_bytes = skillpack.save(pack, file)
    dec_s, _ = _timed(lambda: skillpack.load(file).decode(), repeats=3)
  dense_fp16 = delta.size * 2
  res.update(
    file_bytes=file_bytes,
    bits_per_param=pack.bits_per_param(),
    size_ratio=dense_fp16 / file_bytes,
    decode_params_per_s=delta.size / dec_s,
  )

  rng = np.random.default_rng(1)
  w = jnp.asarray(rng.normal(size=(d_in, d_out)).astype(np.float32) * 0.02)
  xb = jnp.asarray(rng.normal(size=(512, d_in)).astype(np.float32))
  v, s, u = (
    jnp.asarray(a) for a in skillpack.lowrank_factors(pack.modules[path])
  )
  merged = fusion.merge_factors(w, v, s, u)
  f_s, y_f = _timed(
    lambda: fusion.lowrank_apply(xb, w, v, s, u).block_until_ready(), 20
  )
  m_s, y_m = _timed(
    lambda: fusion.merged_apply(xb, merged).block_until_ready(), 20
  )
  res.update(factors_forward_s=f_s, merged_forward_s=m_s)
  res['forward_max_diff'] = float(jnp.max(jnp.abs(y_f - y_m)))

  print(f'delta {d_in}x{d_out}, rank {rank}, groups {groups}, calib n={n}')
  print(
    f'compress: GPTQ {res["gptq_s"]:.2f} s (SVD {svd_s:.2f} s), RTN '
    f'{res["rtn_s"]:.2f} s; GPTQ/RTN time {res["gptq_s"] / res["rtn_s"]:.2f}x'
  )
  print(
    f'relative output error: GPTQ {res["gptq_rel_err"]:.4f}, RTN '
    f'{res["rtn_rel_err"]:.4f} (RTN/GPTQ '
    f'{res["rtn_rel_err"] / res["gptq_rel_err"]:.2f}x)'
  )
  print(
    f'pack {file_bytes} B = {res["bits_per_param"]:.3f} bits/param; dense '
    f'fp16 delta {dense_fp16} B ({res["size_ratio"]:.1f}x larger)'
  )
  print(f'decode: {res["decode_params_per_s"] / 1e6:.1f} M delta params/s')
  print(
    f'forward [512, {d_in}]: factors {f_s * 1e3:.2f} ms, merged '
    f'{m_s * 1e3:.2f} ms (factors/merged {f_s / m_s:.2f}x; max diff '
    f'{res["forward_max_diff"]:.2e})'
  )
  print(
    f'graftllm_pack: size_ratio={res["size_ratio"]:.1f}x (dense fp16 delta '
    f'over the SkillPack file; GPTQ error {res["gptq_rel_err"]:.4f} vs RTN '
    f'{res["rtn_rel_err"]:.4f})'
  )
  del res['gptq'], res['rtn']
  return res


if __name__ == '__main__':
  main()
