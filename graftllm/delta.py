"""Task deltas between a fine-tuned and a base model of one architecture.

    delta = extract_delta(base_params, tuned_params)     # {path: [..]}
    delta = extract_delta_hf('base_dir', 'tuned_dir')    # HF directories
    params = add_delta(base_params, delta, weight=1.0)

Paths are `common.optim` path strings (`layers/0/mlp/up_proj/kernel`);
`module_kind` maps them to GraftLLM's module classes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from common import models
from common.optim import paths as paths_lib

KINDS = ('embed', 'attn', 'mlp', 'other')
_EMBED = re.compile(r'(^|.*/)(embed/embedding|lm_head/kernel)$')
_ATTN = re.compile(r'.*attn/[qkvo]_proj/kernel$')
_MLP = re.compile(r'.*mlp/(gate|up|down)_proj/kernel$')


class ArchitectureMismatch(ValueError):
  """The two models differ in a tensor's presence, shape or the config."""


def module_kind(path: str) -> str:
  """'embed' (embedding / LM head), 'attn', 'mlp' or 'other' (norms, bias)."""
  if _EMBED.match(path):
    return 'embed'
  if _ATTN.match(path):
    return 'attn'
  if _MLP.match(path):
    return 'mlp'
  return 'other'


def flatten(params: Any) -> dict[str, np.ndarray]:
  """`{path: numpy array}` of a parameter tree (`common.optim` paths)."""
  flat, _ = jax.tree_util.tree_flatten_with_path(params)
  return {paths_lib.path_str(p): np.asarray(x) for p, x in flat}


def extract_delta(
  base: Any, tuned: Any, *, names: tuple[str, str] = ('base', 'tuned')
) -> dict[str, np.ndarray]:
  """`{path: tuned - base}` in float32.

  Args:
    base: parameter tree (or `{path: array}`) of the base model.
    tuned: the fine-tuned model's, same architecture.
    names: how messages call the two models.

  Raises:
    ArchitectureMismatch: a tensor is in one model only, or the shapes
      differ (the message names the tensor and both shapes).
  """
  b = base if _is_flat(base) else flatten(base)
  t = tuned if _is_flat(tuned) else flatten(tuned)
  only_b = sorted(set(b) - set(t))
  only_t = sorted(set(t) - set(b))
  if only_b or only_t:
    which = (
      f'{only_b[0]!r} is in the {names[0]} model only'
      if only_b
      else f'{only_t[0]!r} is in the {names[1]} model only'
    )
    raise ArchitectureMismatch(
      f'the models have different tensors: {which} '
      f'({len(only_b)} {names[0]}-only, {len(only_t)} {names[1]}-only).'
    )
  out = {}
  for path in b:
    xb, xt = np.asarray(b[path]), np.asarray(t[path])
    if xb.shape != xt.shape:
      raise ArchitectureMismatch(
        f'tensor {path!r} has shape {xb.shape} in the {names[0]} model but '
        f'{xt.shape} in the {names[1]} model.'
      )
    out[path] = xt.astype(np.float32) - xb.astype(np.float32)
  return out


def _is_flat(tree) -> bool:
  return (
    isinstance(tree, Mapping)
    and all(
      isinstance(k, str) and isinstance(v, np.ndarray) for k, v in tree.items()
    )
    and bool(tree)
  )


def extract_delta_hf(
  base_dir: str, tuned_dir: str
) -> tuple[models.LMConfig, dict[str, np.ndarray]]:
  """`(config, delta)` between two Hugging Face directories.

  Raises:
    ArchitectureMismatch: the configs differ (naming the field) or a
      tensor differs (naming it).
    FileNotFoundError / common.models.HFFormatError: from the loader.
  """
  kw = dict(dtype='float32', param_dtype='float32')
  cb, mb = models.load_hf(base_dir, **kw)
  ct, mt = models.load_hf(tuned_dir, **kw)
  db, dt = dataclasses.asdict(cb), dataclasses.asdict(ct)
  for field in db:
    if field != 'max_seq_len' and db[field] != dt[field]:
      raise ArchitectureMismatch(
        f'config field {field!r} is {db[field]!r} in {base_dir!r} but '
        f'{dt[field]!r} in {tuned_dir!r}; a delta needs one architecture.'
      )
  _, pb = models.split(mb)
  _, pt = models.split(mt)
  return cb, extract_delta(pb, pt, names=(base_dir, tuned_dir))


def add_delta(params: Any, delta: Mapping[str, Any], weight=1.0) -> Any:
  """`params + weight * delta` leaf by leaf (leaves absent from `delta`
  are returned unchanged, bit for bit).

  Raises:
    ArchitectureMismatch: a delta path is not in `params`, or its shape
      differs.
  """
  known = set()

  def add(kp, x):
    path = paths_lib.path_str(kp)
    if path not in delta:
      return x
    known.add(path)
    d = delta[path]
    if tuple(np.shape(d)) != tuple(np.shape(x)):
      raise ArchitectureMismatch(
        f'delta tensor {path!r} has shape {np.shape(d)} but the model '
        f'has {np.shape(x)}.'
      )
    return (x + weight * jax.numpy.asarray(d, x.dtype)).astype(x.dtype)

  out = jax.tree_util.tree_map_with_path(add, params)
  missing = sorted(set(delta) - known)
  if missing:
    raise ArchitectureMismatch(
      f'delta tensor {missing[0]!r} is not a parameter of the model '
      f'({len(missing)} such).'
    )
  return out
