"""SkillPack: packed integers on disk, exact round trip, corrupt files."""

import json
import struct

import numpy as np
import pytest
import safetensors

from graftllm import compress
from graftllm import quant
from graftllm import skillpack

PATHS = {
  'embed/embedding': (40, 16),
  'layers/0/attn/q_proj/kernel': (16, 16),
  'layers/0/mlp/up_proj/kernel': (16, 24),
  'layers/0/input_layernorm/scale': (16,),
}


def _pack(seed=0):
  rng = np.random.default_rng(seed)
  delta = {p: rng.normal(size=s).astype(np.float32) for p, s in PATHS.items()}
  x = rng.normal(size=(64, 16))
  h = np.asarray(quant.hessian(x.astype(np.float32)), np.float64)
  cfg = compress.CompressionConfig(
    alpha=0.25,
    attn_beta=0.8,
    mlp_beta=0.95,
    mlp_bit_groups=((8, 1), (4, 2), (2, -1)),
    group_size=8,
  )
  modules = compress.compress(delta, cfg, {'layers/0/mlp/up_proj/kernel': h})
  return skillpack.SkillPack('arith', modules, {'task': 'arith'}), delta


def test_entry_kinds_follow_the_module_class():
  pack, _ = _pack()
  kinds = {p: e['kind'] for p, e in pack.modules.items()}
  assert kinds == {
    'embed/embedding': 'sparse',
    'layers/0/attn/q_proj/kernel': 'lowrank',
    'layers/0/mlp/up_proj/kernel': 'quant_lowrank',
    'layers/0/input_layernorm/scale': 'dense',
  }
  bits = [
    g['bits'] for g in pack.modules['layers/0/mlp/up_proj/kernel']['groups']
  ]
  assert bits[:2] == [8, 4] and set(bits) <= {8, 4, 2}


def test_round_trip_is_exact_and_equals_the_dequantised_factors(tmp_path):
  pack, _ = _pack()
  path = tmp_path / 'a.safetensors'
  size = skillpack.save(pack, path)
  back = skillpack.load(path)
  assert back.name == 'arith' and back.meta == {'task': 'arith'}
  dense, dense_back = pack.decode(), back.decode()
  for p in PATHS:
    np.testing.assert_array_equal(dense_back[p], dense[p])
  # The dense delta is exactly V_hat S U_hat^T of the dequantised codes.
  e = back.modules['layers/0/mlp/up_proj/kernel']
  v = np.concatenate([quant.dequantize(g['v']).T for g in e['groups']], 1)
  u = np.concatenate([quant.dequantize(g['u']) for g in e['groups']], 1)
  np.testing.assert_array_equal(dense_back['layers/0/mlp/up_proj/kernel'],
                                (v * e['s'][None]) @ u.T)  # fmt: skip
  for g0, g1 in zip(pack.modules['layers/0/mlp/up_proj/kernel']['groups'],
                    e['groups'], strict=True):  # fmt: skip
    np.testing.assert_array_equal(g0['v'].q, g1['v'].q)
    np.testing.assert_array_equal(g0['u'].zero, g1['u'].zero)
  assert size >= pack.nbytes()
  assert pack.bits_per_param() == pytest.approx(
    8 * pack.nbytes() / sum(int(np.prod(s)) for s in PATHS.values())
  )


def test_codes_are_really_packed(tmp_path):
  pack, _ = _pack()
  path = tmp_path / 'a.safetensors'
  skillpack.save(pack, path)
  e = pack.modules['layers/0/mlp/up_proj/kernel']
  with safetensors.safe_open(str(path), framework='numpy') as f:
    for i, g in enumerate(e['groups']):
      rows, cols = g['v'].shape
      q = f.get_tensor(f'layers/0/mlp/up_proj/kernel::g{i}.v.q')
      assert q.dtype == np.uint8
      assert q.size == -(-rows * cols * g['bits'] // 8)
    header = json.loads(f.metadata()['graftllm'])
  assert header['format_version'] == skillpack.FORMAT_VERSION
  m = header['modules']['layers/0/mlp/up_proj/kernel']
  assert m['rank'] == e['s'].size
  assert [g['bits'] for g in m['groups']] == [g['bits'] for g in e['groups']]


def test_truncated_file_names_the_file(tmp_path):
  pack, _ = _pack()
  path = tmp_path / 'cut.safetensors'
  skillpack.save(pack, path)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) - 100])
  with pytest.raises(
    skillpack.SkillPackError, match='cut.safetensors.*truncated'
  ):
    skillpack.load(path)


def test_flipped_byte_fails_the_checksum(tmp_path):
  pack, _ = _pack()
  path = tmp_path / 'flip.safetensors'
  skillpack.save(pack, path)
  data = bytearray(path.read_bytes())
  data[-1] ^= 0xFF  # inside the last tensor's bytes
  path.write_bytes(bytes(data))
  with pytest.raises(
    skillpack.SkillPackError, match='flip.safetensors.*checksum'
  ):
    skillpack.load(path)


def test_missing_not_a_pack_and_other_version(tmp_path):
  with pytest.raises(skillpack.SkillPackError, match='does not exist'):
    skillpack.load(tmp_path / 'none.safetensors')
  plain = tmp_path / 'plain.safetensors'
  safetensors.numpy.save_file({'a': np.zeros(2, np.float32)}, str(plain))
  with pytest.raises(skillpack.SkillPackError, match='not a SkillPack'):
    skillpack.load(plain)
  pack, _ = _pack()
  path = tmp_path / 'v.safetensors'
  skillpack.save(pack, path)
  data = path.read_bytes()
  (n,) = struct.unpack('<Q', data[:8])
  hdr = data[8 : 8 + n].replace(
    b'\\"format_version\\": 1', b'\\"format_version\\": 9'
  )
  path.write_bytes(data[:8] + hdr + data[8 + n :])
  with pytest.raises(skillpack.SkillPackError, match='format version 9'):
    skillpack.load(path)
