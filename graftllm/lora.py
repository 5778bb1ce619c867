"""LoRA at a byte budget: the low-rank fine-tuning baseline for SkillPacks.

A LoRA adapter holds, for each targeted kernel `W [d_in, d_out]`, factors
`a [d_in, r]` and `b [r, d_out]`; the adapted model is `W + (alpha / r) a b`
(`b` starts at zero, so training starts at the base model). Stored in
float16, an adapter takes `2 * r * sum(d_in + d_out)` bytes, so
`rank_for_bytes` picks the largest r within a SkillPack's size.

    lora = init_lora(key, base_params, rank=4)
    params = apply_lora(base_params, lora, alpha=8.0)   # inside the loss
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp

from graftllm import delta as delta_lib

DEFAULT_TARGETS = r'.*(attn/[qkvo]_proj|mlp/(gate|up|down)_proj)/kernel$'
BYTES_PER_VALUE = 2  # float16 storage


def _targets(params, pattern: str) -> dict[str, tuple[int, int]]:
  rx = re.compile(pattern)
  out = {
    p: tuple(x.shape)
    for p, x in delta_lib.flatten(params).items()
    if x.ndim == 2 and rx.fullmatch(p)
  }
  if not out:
    raise ValueError(f'LoRA targets {pattern!r} match no 2-D parameter.')
  return out


def adapter_bytes(params, rank: int, targets: str = DEFAULT_TARGETS) -> int:
  """float16 bytes of a rank-`rank` adapter on the targeted kernels."""
  shapes = _targets(params, targets)
  return BYTES_PER_VALUE * rank * sum(a + b for a, b in shapes.values())


def rank_for_bytes(params, budget: int, targets: str = DEFAULT_TARGETS) -> int:
  """Largest rank whose adapter fits in `budget` bytes (at least 1)."""
  per_rank = adapter_bytes(params, 1, targets)
  return max(1, int(budget // per_rank))


def init_lora(
  key, params, rank: int, targets: str = DEFAULT_TARGETS
) -> dict[str, dict[str, jax.Array]]:
  """`{path: {'a' [d_in, r] ~ N(0, 1/d_in), 'b' [r, d_out] = 0}}`."""
  if isinstance(rank, bool) or int(rank) != rank or rank < 1:
    raise ValueError(f'LoRA rank={rank!r}; allowed: an integer >= 1.')
  shapes = _targets(params, targets)
  keys = jax.random.split(key, len(shapes))
  for path, (d_in, d_out) in shapes.items():
    if rank > min(d_in, d_out):
      raise ValueError(
        f'LoRA rank {rank} exceeds min(d_in, d_out) = {min(d_in, d_out)} of '
        f'{path!r}.'
      )
  return {
    path: {
      'a': jax.random.normal(k, (d_in, rank)) / jnp.sqrt(d_in),
      'b': jnp.zeros((rank, d_out)),
    }
    for (path, (d_in, d_out)), k in zip(shapes.items(), keys, strict=True)
  }


def lora_delta(lora, alpha: float) -> dict[str, jax.Array]:
  """`{path: (alpha / r) a b}` dense deltas."""
  return {
    p: (alpha / f['a'].shape[1]) * (f['a'] @ f['b']) for p, f in lora.items()
  }


def apply_lora(params: Any, lora, alpha: float) -> Any:
  """`params` with every targeted kernel `W + (alpha / r) a b` (jit-able)."""
  return delta_lib.add_delta(params, lora_delta(lora, alpha))
