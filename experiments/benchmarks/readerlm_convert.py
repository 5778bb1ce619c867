"""Benchmark: HTML -> Markdown throughput of the peers and the tiny model.

On the Node.js API pages (`/usr/share/doc/nodejs/api`, smallest first; the
synthetic pages when the directory is absent):

* pages/s of the cleaning + drafting path (`clean_html` then the default
  drafter, html-to-markdown) and of each peer converter on the raw page;
* the rule refiner (boilerplate removal + normalisation) per page;
* the tiny ReaderLM model's greedy generation tokens/s with the KV cache
  (`common.sampling.Sampler`, repetition penalty 1.08; compilation excluded
  by a warm-up call), randomly initialised: speed only, not quality.

Ends with one line of ratios. Run:

  python -m experiments.benchmarks.readerlm_convert [--pages 6] [--smoke]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from flax import nnx

from common import models
from common import sampling
from common import synthetic
from readerlm import converters
from readerlm import pages as pages_lib
from readerlm import realpages
from readerlm import refine


def _pages(n: int) -> tuple[list[str], str]:
  try:
    real = realpages.load_nodejs(max_pages=n)
    if real:
      return [p['html'] for p in real], f'{len(real)} Node.js pages'
  except FileNotFoundError:
    pass
  world = synthetic.build_knowledge_world(synthetic.KnowledgeWorldConfig.tiny())
  split = pages_lib.build_pages(world, pages_lib.PageConfig())
  return [p['html'] for p in split['train'][:n]], f'{n} synthetic pages'


def _rate(fn, items) -> float:
  t0 = time.perf_counter()
  for x in items:
    fn(x)
  return len(items) / max(time.perf_counter() - t0, 1e-9)


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--pages', type=int, default=6)
  ap.add_argument('--smoke', action='store_true')
  args = ap.parse_args()
  n = 2 if args.smoke else args.pages
  htmls, what = _pages(n)
  rates = {}
  rates['clean+draft'] = _rate(
    lambda h: converters.convert('html_to_markdown', h, clean=True), htmls
  )
  for name in converters.DRAFTERS:
    rates[name] = _rate(
      lambda h, nm=name: converters.convert(nm, h, clean=False), htmls
    )
  drafts = [converters.convert('html_to_markdown', h) for h in htmls]
  t0 = time.perf_counter()
  for h, d in zip(htmls, drafts, strict=True):
    refine.refine_markdown(h, d)
  rates['rule refine'] = len(htmls) / (time.perf_counter() - t0)
  for k, v in rates.items():
    print(f'{k:>18}: {v:8.2f} pages/s ({what})')

  cfg = models.get_preset(
    'tiny', vocab_size=1024, d_model=64, n_layers=2, d_ff=128
  )
  model = models.Transformer(cfg, rngs=nnx.Rngs(0))
  new = 16 if args.smoke else 64
  sampler = sampling.Sampler(model, capacity=384 + new)
  gen = sampling.GenerationConfig(new, temperature=0.0, repetition_penalty=1.08)
  rng = np.random.default_rng(0)
  tokens = rng.integers(5, 1024, (8, 384)).astype(np.int32)
  jax.block_until_ready(
    sampler.sample(tokens, None, jax.random.key(0), gen).tokens
  )
  t0 = time.perf_counter()
  out = sampler.sample(tokens, None, jax.random.key(1), gen)
  jax.block_until_ready(out.tokens)
  tps = float(np.asarray(out.lengths).sum()) / (time.perf_counter() - t0)
  print(f'tiny model (8 x 384-token prompts): {tps:.1f} generated tokens/s')
  base = rates['clean+draft']
  print(
    'readerlm_convert: clean+draft={:.1f} pages/s ({}; markdownify {:.2f}x, '
    'html2text {:.2f}x, trafilatura {:.2f}x, rule refine {:.2f}x of it); '
    'tiny model {:.0f} tok/s'.format(
      base, what, rates['markdownify'] / base, rates['html2text'] / base,
      rates['trafilatura'] / base, rates['rule refine'] / base, tps,
    )
  )  # fmt: skip


if __name__ == '__main__':
  main()
