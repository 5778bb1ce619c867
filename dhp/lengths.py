"""Seeded sequence-length generators for heterogeneous (multimodal) batches.

Every generator returns an int64 array [B] of lengths in tokens, drawn from a
``numpy.random.Generator`` seeded by ``seed`` (same seed, same batch).

* ``long_tail``: video-heavy, long-tailed lengths (lognormal, mu=8.5,
  sigma=1.3 by default, the research note's OpenVid-like setting).
* ``multimodal``: a mixture of text-only samples, image+text samples (1-4
  images of 256-2304 visual tokens) and video+text samples (8-64 frames of
  256 tokens), as in InternVL/Qwen-VL style batches.
* ``uniform``: near-uniform lengths (mean +- spread), MSRVTT-like.
* ``bimodal``: mostly short samples plus a fraction of very long ones.
* ``pareto``: heavy power-law tail (Pareto, shape 1.1 by default).
"""

from __future__ import annotations

import numpy as np


def _check(batch_size, min_len, max_len):
  if int(batch_size) != batch_size or batch_size < 1:
    raise ValueError(f'batch_size={batch_size!r}: must be an int >= 1.')
  if min_len < 1 or max_len < min_len:
    raise ValueError(
      f'min_len={min_len}, max_len={max_len}: need 1 <= min_len <= max_len.'
    )


def _finish(x, min_len, max_len):
  return np.clip(np.rint(x), min_len, max_len).astype(np.int64)


def long_tail(batch_size, seed, mu=8.5, sigma=1.3, min_len=64, max_len=131072):
  """Lognormal lengths: many short clips, a few very long videos. [B]."""
  _check(batch_size, min_len, max_len)
  rng = np.random.default_rng(seed)
  return _finish(rng.lognormal(mu, sigma, batch_size), min_len, max_len)


def multimodal(
  batch_size, seed, p_text=0.3, p_image=0.45, min_len=64, max_len=131072
):
  """Text / image+text / video+text mixture. [B].

  Text tokens are lognormal(6.5, 0.8); an image sample adds 1-4 images of
  256-2304 tokens; a video sample adds 8-64 frames of 256 tokens each.
  """
  _check(batch_size, min_len, max_len)
  if not (0 <= p_text and 0 <= p_image and p_text + p_image <= 1):
    raise ValueError(
      f'p_text={p_text}, p_image={p_image}: need '
      'non-negative probabilities summing to <= 1.'
    )
  rng = np.random.default_rng(seed)
  kind = rng.choice(
    3, size=batch_size, p=[p_text, p_image, 1 - p_text - p_image]
  )
  text = rng.lognormal(6.5, 0.8, batch_size)
  n_images = rng.integers(1, 5, batch_size)
  image_tokens = n_images * rng.integers(256, 2305, batch_size)
  frames = rng.integers(8, 65, batch_size)
  video_tokens = frames * 256
  x = text + np.where(kind == 1, image_tokens, 0)
  x = x + np.where(kind == 2, video_tokens, 0)
  return _finish(x, min_len, max_len)


def uniform(
  batch_size, seed, mean=8192, spread=0.1, min_len=64, max_len=131072
):
  """Near-uniform lengths in mean * [1 - spread, 1 + spread]. [B]."""
  _check(batch_size, min_len, max_len)
  if not 0 <= spread < 1:
    raise ValueError(f'spread={spread}: must be in [0, 1).')
  rng = np.random.default_rng(seed)
  x = mean * rng.uniform(1 - spread, 1 + spread, batch_size)
  return _finish(x, min_len, max_len)


def bimodal(
  batch_size,
  seed,
  short=2048,
  long=65536,
  p_long=0.1,
  jitter=0.2,
  min_len=64,
  max_len=131072,
):
  """Short samples plus a fraction p_long of long ones (+-jitter). [B]."""
  _check(batch_size, min_len, max_len)
  if not 0 <= p_long <= 1:
    raise ValueError(f'p_long={p_long}: must be in [0, 1].')
  rng = np.random.default_rng(seed)
  base = np.where(rng.random(batch_size) < p_long, long, short)
  x = base * rng.uniform(1 - jitter, 1 + jitter, batch_size)
  return _finish(x, min_len, max_len)


def pareto(batch_size, seed, shape=1.1, scale=1024, min_len=64, max_len=131072):
  """Power-law lengths scale * (1 + Pareto(shape)): a heavier tail. [B]."""
  _check(batch_size, min_len, max_len)
  if not shape > 0 or not scale > 0:
    raise ValueError(f'shape={shape}, scale={scale}: both must be > 0.')
  rng = np.random.default_rng(seed)
  return _finish(
    scale * (1.0 + rng.pareto(shape, batch_size)), min_len, max_len
  )


GENERATORS = {
  'long_tail': long_tail,
  'multimodal': multimodal,
  'uniform': uniform,
  'bimodal': bimodal,
  'pareto': pareto,
}


def sample(name, batch_size, seed, **kwargs):
  """Draws a batch from the generator called ``name``. [B] int64."""
  if name not in GENERATORS:
    raise ValueError(
      f'unknown length distribution {name!r}; known: {sorted(GENERATORS)}.'
    )
  return GENERATORS[name](batch_size, seed, **kwargs)
