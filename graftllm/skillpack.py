"""The SkillPack: a compressed task delta, in memory and on disk.

A `SkillPack` holds one entry per delta tensor (`compress.compress`):

| kind | stored |
| --- | --- |
| `sparse` | flat `indices` (uint16/32), float16 `values` |
| `lowrank` | float16 `v [d_in, r]`, `u [d_out, r]`, float32 `s [r]` |
| `quant_lowrank` | float32 `s [r]`; per bit group `v` = V_g^T, `u` = U_g (*) |

(*) packed b-bit codes, float16 scales, b-bit zero points and the act-order
permutation of each.
| `dense` | float16 `values` |

File format (version `FORMAT_VERSION`): one `.safetensors` file. Every
array is a tensor named `<path>::<field>` (codes and zero points already
packed into bytes by `bitpack`); the metadata key `graftllm` holds a JSON
header with the format version, the pack's name and meta, each module's
kind, shape, ranks and bit groups, and a SHA-256 of every tensor's bytes.
safetensors is what Hugging Face users already read (memory-mapped, no
pickle, inspectable from any language); orbax would tie a pack to a JAX
checkpoint layout. A missing, truncated or altered file raises
`SkillPackError` naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import safetensors
import safetensors.numpy

from graftllm import bitpack
from graftllm import prune
from graftllm import quant

FORMAT_VERSION = 1
META_KEY = 'graftllm'


class SkillPackError(ValueError):
  """A SkillPack file is missing, truncated, corrupt or of another version."""


@dataclasses.dataclass
class SkillPack:
  """A named, compressed task delta.

  Attributes:
    name: the skill (e.g. the task id it was trained for).
    modules: `{parameter path: entry}` (see the module docstring).
    meta: JSON-serialisable facts (compression config, base model, ...).
  """

  name: str
  modules: dict[str, dict[str, Any]]
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)

  def num_params(self) -> int:
    """Delta parameters the pack stands for (all its tensors' sizes)."""
    return int(sum(np.prod(e['shape']) for e in self.modules.values()))

  def nbytes(self, by_kind: bool = False):
    """Bytes of the stored arrays (packed codes), as `save` writes them."""
    sizes: dict[str, int] = {}
    for entry in self.modules.values():
      n = sum(a.nbytes for a in _arrays(entry).values())
      sizes[entry['kind']] = sizes.get(entry['kind'], 0) + n
    return sizes if by_kind else sum(sizes.values())

  def bits_per_param(self) -> float:
    """`8 * nbytes / num_params`: bits per delta parameter."""
    return 8.0 * self.nbytes() / max(self.num_params(), 1)

  def ranks(self) -> dict[str, int]:
    """`{path: rank}` of the low-rank entries."""
    return {
      p: int(e['s'].size)
      for p, e in self.modules.items()
      if e['kind'] in ('lowrank', 'quant_lowrank')
    }

  def decode(self) -> dict[str, np.ndarray]:
    """`{path: float32 dense delta}` (the dequantised reconstruction)."""
    return {p: decode_entry(e) for p, e in self.modules.items()}


def lowrank_factors(entry: Mapping[str, Any]):
  """`(V [d_in, r], S [r], U [d_out, r])` float32 of a low-rank entry."""
  if entry['kind'] == 'lowrank':
    return (
      entry['v'].astype(np.float32),
      entry['s'].astype(np.float32),
      entry['u'].astype(np.float32),
    )
  if entry['kind'] != 'quant_lowrank':
    raise ValueError(f'entry kind {entry["kind"]!r} has no low-rank factors.')
  vs = [quant.dequantize(g['v']).T for g in entry['groups']]
  us = [quant.dequantize(g['u']) for g in entry['groups']]
  d_in, d_out = entry['shape']
  v = np.concatenate(vs, 1) if vs else np.zeros((d_in, 0), np.float32)
  u = np.concatenate(us, 1) if us else np.zeros((d_out, 0), np.float32)
  return v, entry['s'].astype(np.float32), u


def decode_entry(entry: Mapping[str, Any]) -> np.ndarray:
  """The float32 dense delta of one entry."""
  kind = entry['kind']
  if kind == 'dense':
    return entry['values'].astype(np.float32)
  if kind == 'sparse':
    return prune.densify(
      prune.Sparse(entry['indices'], entry['values'], tuple(entry['shape']))
    )
  v, s, u = lowrank_factors(entry)
  return (v * s[None, :]) @ u.T


# ----------------------------------------------------------------- file I/O


def _qm_arrays(prefix: str, m: quant.QuantizedMatrix) -> dict[str, np.ndarray]:
  return {
    f'{prefix}.q': bitpack.pack(m.q, m.bits),
    f'{prefix}.scale': m.scale,
    f'{prefix}.zero': bitpack.pack(m.zero, m.bits),
    f'{prefix}.perm': m.perm.astype(prune.index_dtype(m.perm.size)),
  }


def _qm_header(m: quant.QuantizedMatrix) -> dict[str, Any]:
  return {'shape': list(m.shape), 'bits': m.bits, 'group_size': m.group_size}


def _arrays(entry: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The arrays `save` writes for one entry (field -> array)."""
  kind = entry['kind']
  if kind == 'dense':
    return {'values': entry['values']}
  if kind == 'sparse':
    return {'indices': entry['indices'], 'values': entry['values']}
  if kind == 'lowrank':
    return {'v': entry['v'], 's': entry['s'], 'u': entry['u']}
  out = {'s': entry['s']}
  for i, g in enumerate(entry['groups']):
    out.update(_qm_arrays(f'g{i}.v', g['v']))
    out.update(_qm_arrays(f'g{i}.u', g['u']))
  return out


def _entry_header(entry: Mapping[str, Any]) -> dict[str, Any]:
  h = {'kind': entry['kind'], 'shape': [int(x) for x in entry['shape']]}
  if entry['kind'] == 'quant_lowrank':
    h['groups'] = [
      {'bits': g['bits'], 'v': _qm_header(g['v']), 'u': _qm_header(g['u'])}
      for g in entry['groups']
    ]
  if entry['kind'] in ('lowrank', 'quant_lowrank'):
    h['rank'] = int(entry['s'].size)
  return h


def _digest(a: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def save(pack: SkillPack, path: str | os.PathLike) -> int:
  """Writes `pack` to `path` (.safetensors) atomically; returns its bytes."""
  tensors, modules = {}, {}
  for mpath, entry in pack.modules.items():
    if '::' in mpath:
      raise ValueError(f"module path {mpath!r} may not contain '::'.")
    modules[mpath] = _entry_header(entry)
    for field, arr in _arrays(entry).items():
      tensors[f'{mpath}::{field}'] = np.ascontiguousarray(arr)
  header = {
    'format_version': FORMAT_VERSION,
    'name': pack.name,
    'meta': pack.meta,
    'modules': modules,
    'sha256': {k: _digest(v) for k, v in tensors.items()},
  }
  path = os.fspath(path)
  tmp = path + '.tmp'
  safetensors.numpy.save_file(
    tensors, tmp, metadata={META_KEY: json.dumps(header, sort_keys=True)}
  )
  os.replace(tmp, path)
  return os.path.getsize(path)


def _qm_from(t, prefix, h) -> quant.QuantizedMatrix:
  rows, cols = h['shape']
  bits, gs = int(h['bits']), int(h['group_size'])
  n_groups = -(-cols // gs)
  return quant.QuantizedMatrix(
    q=bitpack.unpack(t[f'{prefix}.q'], bits, rows * cols).reshape(rows, cols),
    scale=t[f'{prefix}.scale'].reshape(rows, n_groups),
    zero=bitpack.unpack(t[f'{prefix}.zero'], bits, rows * n_groups).reshape(
      rows, n_groups
    ),
    perm=t[f'{prefix}.perm'].astype(np.int32),
    bits=bits,
    group_size=gs,
  )


def _entry_from(t: Mapping[str, np.ndarray], h: Mapping[str, Any]):
  kind, shape = h['kind'], tuple(h['shape'])
  if kind == 'dense':
    return {'kind': kind, 'shape': shape, 'values': t['values']}
  if kind == 'sparse':
    return {
      'kind': kind,
      'shape': shape,
      'indices': t['indices'],
      'values': t['values'],
    }
  if kind == 'lowrank':
    return {'kind': kind, 'shape': shape, 'v': t['v'], 's': t['s'], 'u': t['u']}
  if kind == 'quant_lowrank':
    groups = [
      {
        'bits': int(g['bits']),
        'v': _qm_from(t, f'g{i}.v', g['v']),
        'u': _qm_from(t, f'g{i}.u', g['u']),
      }
      for i, g in enumerate(h['groups'])
    ]
    return {'kind': kind, 'shape': shape, 's': t['s'], 'groups': groups}
  raise ValueError(f'unknown entry kind {kind!r}')


def load(path: str | os.PathLike) -> SkillPack:
  """Reads a pack written by `save`.

  Raises:
    SkillPackError: the file is missing, not a SkillPack, truncated or
      corrupt (a tensor's checksum differs), or of another format version;
      the message names the file.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise SkillPackError(f'SkillPack file {path!r} does not exist.')
  try:
    with safetensors.safe_open(path, framework='numpy') as f:
      meta = f.metadata() or {}
      raw = {k: f.get_tensor(k) for k in f.keys()}
  except Exception as e:  # safetensors raises its own error types
    raise SkillPackError(
      f'SkillPack file {path!r} is truncated or corrupt (safetensors: {e}).'
    ) from e
  if META_KEY not in meta:
    raise SkillPackError(
      f'{path!r} is a safetensors file without a {META_KEY!r} header; '
      'not a SkillPack.'
    )
  try:
    header = json.loads(meta[META_KEY])
    version = header['format_version']
  except (json.JSONDecodeError, KeyError, TypeError) as e:
    raise SkillPackError(f'SkillPack {path!r} has a corrupt header: {e}') from e
  if version != FORMAT_VERSION:
    raise SkillPackError(
      f'SkillPack {path!r} has format version {version!r}; this code reads '
      f'version {FORMAT_VERSION}.'
    )
  digests = header.get('sha256', {})
  if set(digests) != set(raw):
    missing = sorted(set(digests) ^ set(raw))[:1]
    raise SkillPackError(
      f'SkillPack {path!r} is corrupt: tensor {missing} is missing or extra.'
    )
  for k, arr in raw.items():
    if _digest(arr) != digests[k]:
      raise SkillPackError(
        f'SkillPack {path!r} is corrupt: tensor {k!r} fails its checksum.'
      )
  modules = {}
  try:
    for mpath, h in header['modules'].items():
      t = {
        k.split('::', 1)[1]: v
        for k, v in raw.items()
        if k.split('::', 1)[0] == mpath
      }
      modules[mpath] = _entry_from(t, h)
  except (KeyError, ValueError) as e:
    raise SkillPackError(
      f'SkillPack {path!r} is corrupt: module header does not match its '
      f'tensors ({e}).'
    ) from e
  return SkillPack(header.get('name', ''), modules, header.get('meta', {}))
