"""Module-aware delta compression (GraftLLM's SkillPack contents).

Per module class (`delta.module_kind`):

* embed / LM head: magnitude pruning, top-`alpha` of |delta| kept sparse;
* attention: truncated SVD at the `attn_beta` explained-variance rank,
  float16 factors (or, with `attn_bit_groups`, the MLP treatment, as the
  released code does);
* MLP: SVD at the `mlp_beta` rank (or a fixed `mlp_rank`), the singular
  vectors split into bit groups (`mlp_bit_groups`, largest sigma first:
  `((8, 2), (4, 6), (2, -1))` = 2 columns at 8 bits, 6 at 4, the rest of
  the rank at 2), and each group GPTQ-quantised: V_g^T first against the
  layer inputs' Hessian H_x, then U_g against the inputs it really sees,
  z = S_g * (x V_hat_g), whose Hessian is S_g V_hat_g^T H_x V_hat_g S_g;
* other (norm scales, biases): dense float16.

`mode='uniform'` is the ablation: every matrix gets the MLP treatment
(the embedding without calibration, i.e. H = I, which makes GPTQ
round-to-nearest).

Calibration is `{kernel path: H [d_in, d_in]}` (`quant.hessian` of the
layer inputs); a kernel without one uses H = I.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from graftllm import delta as delta_lib
from graftllm import prune
from graftllm import quant
from graftllm import svd

MODES = ('module_aware', 'uniform')
FACTOR_DTYPE = np.float16


@dataclasses.dataclass(frozen=True)
class CompressionConfig:
  """What to keep of each module class.

  Attributes:
    alpha: kept fraction of embedding / LM-head delta entries, (0, 1].
    attn_beta: explained-variance fraction for attention ranks, (0, 1].
    mlp_beta: the same for MLP ranks.
    mlp_rank: a fixed MLP rank instead of the beta rule (0: use beta).
    attn_rank: a fixed attention rank (0: use beta).
    mlp_bit_groups: `((bits, columns), ...)` from the largest singular
      value down; `-1` columns = the rest of the rank. Columns past the
      groups are dropped (as in the released code).
    attn_bit_groups: `()` for float16 attention factors, else as above.
    group_size: GPTQ columns per scale/zero group.
    damp: GPTQ's percdamp.
    act_order: GPTQ act-order.
    quantizer: 'gptq' or 'rtn' (round-to-nearest, no calibration).
    mode: 'module_aware' or 'uniform'.
  """

  alpha: float = 0.1
  attn_beta: float = 0.9
  mlp_beta: float = 0.9
  mlp_rank: int = 0
  attn_rank: int = 0
  mlp_bit_groups: tuple[tuple[int, int], ...] = ((8, 2), (4, 6), (2, -1))
  attn_bit_groups: tuple[tuple[int, int], ...] = ()
  group_size: int = 128
  damp: float = 0.01
  act_order: bool = True
  quantizer: str = 'gptq'
  mode: str = 'module_aware'

  def __post_init__(self):
    prune.check_alpha(self.alpha, 'alpha')
    svd.check_beta(self.attn_beta, 'attn_beta')
    svd.check_beta(self.mlp_beta, 'mlp_beta')
    for name in ('mlp_rank', 'attn_rank'):
      v = getattr(self, name)
      if isinstance(v, bool) or int(v) != v or v < 0:
        raise ValueError(f'{name}={v!r} is invalid; allowed: an integer >= 0.')
    check_bit_groups(self.mlp_bit_groups, 'mlp_bit_groups', empty_ok=False)
    check_bit_groups(self.attn_bit_groups, 'attn_bit_groups', empty_ok=True)
    if int(self.group_size) != self.group_size or self.group_size < 1:
      raise ValueError(f'group_size={self.group_size!r} must be >= 1.')
    if not 0.0 <= self.damp:
      raise ValueError(f'damp={self.damp!r} must be >= 0.')
    if self.quantizer not in ('gptq', 'rtn'):
      raise ValueError(
        f"quantizer={self.quantizer!r}; allowed: ('gptq', 'rtn')."
      )
    if self.mode not in MODES:
      raise ValueError(f'mode={self.mode!r}; allowed: {MODES}.')


def check_bit_groups(groups, field: str, empty_ok: bool) -> None:
  """ValueError naming `field` unless `groups` is `((bits, cols), ...)`."""
  allowed = (
    f'a tuple of (bits, columns) pairs, bits in {quant.SUPPORTED_BITS}, '
    'columns >= 1 or -1 (the rest of the rank, last group only)'
  )
  if not isinstance(groups, tuple | list) or (not groups and not empty_ok):
    raise ValueError(f'{field}={groups!r} is invalid; allowed: {allowed}.')
  for i, g in enumerate(groups):
    if not isinstance(g, tuple | list) or len(g) != 2:
      raise ValueError(f'{field}[{i}]={g!r} is invalid; allowed: {allowed}.')
    quant.check_bits(g[0], f'{field}[{i}] bits')
    cols = g[1]
    if (
      isinstance(cols, bool)
      or int(cols) != cols
      or not (cols >= 1 or (cols == -1 and i == len(groups) - 1))
    ):
      raise ValueError(f'{field}[{i}]={g!r} is invalid; allowed: {allowed}.')


def split_rank(groups, rank: int) -> list[tuple[int, int]]:
  """`[(bits, cols)]` covering at most `rank` columns (empty groups dropped).

  >>> split_rank(((8, 2), (4, 6), (2, -1)), 20)
  [(8, 2), (4, 6), (2, 12)]
  """
  out, left = [], rank
  for bits, cols in groups:
    n = left if cols == -1 else min(int(cols), left)
    if n > 0:
      out.append((int(bits), n))
    left -= n
  return out


def _rank(kernel, beta: float, fixed: int, path: str) -> svd.Factors:
  if fixed:
    lim = min(kernel.shape)
    if fixed > lim:
      raise ValueError(
        f'rank {fixed} for {path!r} exceeds min(d_in, d_out) = {lim} of its '
        f'{tuple(kernel.shape)} delta; allowed: 1..{lim}.'
      )
    return svd.truncated_svd(kernel, rank=fixed)
  return svd.truncated_svd(kernel, beta=beta)


def _quantize(w, h, bits, cfg: CompressionConfig) -> quant.QuantizedMatrix:
  if cfg.quantizer == 'rtn':
    return quant.rtn(w, bits, cfg.group_size)
  return quant.gptq(w, h, bits, cfg.group_size, cfg.damp, cfg.act_order)


def quantized_lowrank(
  kernel, h, f: svd.Factors, groups, cfg: CompressionConfig
) -> dict[str, Any]:
  """Mixed-bit GPTQ of factors `f` of `kernel [d_in, d_out]`.

  Args:
    kernel: the delta (only its shape is used).
    h: `[d_in, d_in]` Hessian of the layer inputs, or None (identity).
    f: its truncated SVD factors.
    groups: `[(bits, cols)]` from `split_rank`.
    cfg: GPTQ settings.

  Returns:
    `{'kind': 'quant_lowrank', 'shape', 's' [r] float32, 'groups': [{'bits',
    'v': QuantizedMatrix V_g^T [r_g, d_in], 'u': QuantizedMatrix U_g
    [d_out, r_g]}]}`.
  """
  d_in = kernel.shape[0]
  hx = (
    np.eye(d_in, dtype=np.float64) if h is None else np.asarray(h, np.float64)
  )
  out, start = [], 0
  for bits, n in groups:
    sl = slice(start, start + n)
    vq = _quantize(f.v[:, sl].T, hx, bits, cfg)
    v_hat = quant.dequantize(vq).T.astype(np.float64)  # [d_in, n]
    sv = v_hat * f.s[sl][None, :].astype(np.float64)
    hz = sv.T @ hx @ sv  # Hessian of z = S_g * (x V_hat_g)
    uq = _quantize(f.u[:, sl], hz, bits, cfg)
    out.append({'bits': bits, 'v': vq, 'u': uq})
    start += n
  return {
    'kind': 'quant_lowrank',
    'shape': tuple(kernel.shape),
    's': f.s[:start].astype(np.float32),
    'groups': out,
  }


def compress_module(
  path: str,
  kernel,
  cfg: CompressionConfig,
  h=None,
) -> dict[str, Any]:
  """One module's compressed delta (a SkillPack entry).

  Raises:
    ValueError: a Hessian of the wrong width, a fixed rank too large (the
      message names `path`).
  """
  kernel = np.asarray(kernel, np.float32)
  kind = delta_lib.module_kind(path)
  if h is not None and (
    kernel.ndim != 2 or np.shape(h) != (kernel.shape[0],) * 2
  ):
    raise ValueError(
      f'calibration width mismatch for {path!r}: the delta is '
      f'{kernel.shape} (input width {kernel.shape[0]}) but its Hessian is '
      f'{np.shape(h)}; calibration activations must have width d_in.'
    )
  if kernel.ndim != 2 or kind == 'other':
    return {
      'kind': 'dense',
      'shape': tuple(kernel.shape),
      'values': kernel.astype(FACTOR_DTYPE),
    }
  uniform = cfg.mode == 'uniform'
  if kind == 'embed' and not uniform:
    s = prune.magnitude_prune(kernel, cfg.alpha)
    return {
      'kind': 'sparse',
      'shape': s.shape,
      'indices': s.indices,
      'values': s.values,
    }
  if kind == 'attn' and not uniform:
    f = _rank(kernel, cfg.attn_beta, cfg.attn_rank, path)
    if not cfg.attn_bit_groups:
      return {
        'kind': 'lowrank',
        'shape': tuple(kernel.shape),
        'v': f.v.astype(FACTOR_DTYPE),
        's': f.s.astype(np.float32),
        'u': f.u.astype(FACTOR_DTYPE),
      }
    groups = split_rank(cfg.attn_bit_groups, f.s.size)
    return quantized_lowrank(kernel, h, f, groups, cfg)
  f = _rank(kernel, cfg.mlp_beta, cfg.mlp_rank, path)
  groups = split_rank(cfg.mlp_bit_groups, f.s.size)
  return quantized_lowrank(
    kernel, h if kind != 'embed' else None, f, groups, cfg
  )


def compress(
  delta: Mapping[str, np.ndarray],
  cfg: CompressionConfig,
  calibration: Mapping[str, np.ndarray] | None = None,
  progress=None,
) -> dict[str, dict[str, Any]]:
  """`{path: entry}` for every tensor of `delta` (see `compress_module`).

  Raises:
    ValueError: a calibration path that is not in `delta`.
  """
  calibration = dict(calibration or {})
  extra = sorted(set(calibration) - set(delta))
  if extra:
    raise ValueError(
      f'calibration for {extra[0]!r}, which is not a tensor of the delta.'
    )
  out = {}
  for path in delta:
    out[path] = compress_module(path, delta[path], cfg, calibration.get(path))
    if progress is not None:
      progress(path)
  return out
