"""Hugging Face model directories (Llama / Qwen2) <-> `Transformer`.

A directory holds `config.json`, the weights as `model.safetensors` or as
shards listed in `model.safetensors.index.json`, and optionally
`tokenizer.json`. Tensor names follow transformers' `LlamaForCausalLM` and
`Qwen2ForCausalLM`:

  model.embed_tokens.weight                    -> embed/embedding
  model.layers.N.self_attn.{q,k,v,o}_proj.weight -> layers/N/attn/*/kernel (T)
  model.layers.N.self_attn.{q,k,v}_proj.bias   -> layers/N/attn/*/bias
  model.layers.N.mlp.{gate,up,down}_proj.weight -> layers/N/mlp/*/kernel (T)
  model.layers.N.input_layernorm.weight        -> layers/N/input_layernorm/scale
  model.layers.N.post_attention_layernorm.weight
                                  -> layers/N/post_attention_layernorm/scale
  model.norm.weight                            -> norm/scale
  lm_head.weight                               -> lm_head/kernel (T, untied)

HF `Linear` weights are `(out, in)`; Flax kernels are `(in, out)`, hence
the transposes (T). bfloat16 tensors are read and written as
`ml_dtypes.bfloat16` numpy arrays.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import safetensors
import safetensors.numpy
import tokenizers
from flax import nnx

from common.models import config as config_lib
from common.models import layout
from common.models import transformer

_ARCHITECTURES = {'LlamaForCausalLM': 'llama', 'Qwen2ForCausalLM': 'qwen2'}
_TORCH_DTYPES = {
  'float32': 'float32',
  'bfloat16': 'bfloat16',
  'float16': 'float16',
}
_NP_DTYPES = {
  'float32': np.float32,
  'bfloat16': ml_dtypes.bfloat16,
  'float16': np.float16,
}
# Buffers some older checkpoints store; they carry no parameters.
_IGNORED = re.compile(r'model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq')
SINGLE_FILE = 'model.safetensors'
INDEX_FILE = 'model.safetensors.index.json'


class HFFormatError(ValueError):
  """A Hugging Face directory does not match what the model expects."""


def _require(hf: dict, key: str, path: str):
  if key not in hf:
    raise HFFormatError(f'{path}: required field {key!r} is missing.')
  return hf[key]


def config_from_hf(hf: dict, path: str = 'config.json') -> config_lib.LMConfig:
  """Maps a transformers `config.json` dict to an `LMConfig`.

  Raises:
    HFFormatError: unsupported architecture or feature, or missing field.
  """
  archs = _require(hf, 'architectures', path)
  if (
    not isinstance(archs, list)
    or len(archs) != 1
    or archs[0] not in _ARCHITECTURES
  ):
    raise HFFormatError(
      f'{path}: architectures={archs!r} is not supported; supported: '
      f'{sorted(_ARCHITECTURES)}.'
    )
  family = _ARCHITECTURES[archs[0]]
  act = hf.get('hidden_act', 'silu')
  if act != 'silu':
    raise HFFormatError(
      f'{path}: hidden_act={act!r}; only "silu" (SwiGLU) is supported.'
    )
  if hf.get('mlp_bias', False):
    raise HFFormatError(f'{path}: mlp_bias=true is not supported.')
  if family == 'llama' and hf.get('attention_bias', False):
    raise HFFormatError(
      f'{path}: attention_bias=true (biases on q/k/v/o) is not supported '
      'for LlamaForCausalLM.'
    )
  if family == 'qwen2' and hf.get('use_sliding_window', False):
    raise HFFormatError(f'{path}: use_sliding_window=true is not supported.')
  torch_dtype = hf.get('torch_dtype', hf.get('dtype', 'float32'))
  if torch_dtype not in _TORCH_DTYPES:
    raise HFFormatError(
      f'{path}: torch_dtype={torch_dtype!r}; supported: '
      f'{sorted(_TORCH_DTYPES)}.'
    )
  # transformers >= 5 writes `rope_parameters` ({rope_theta, rope_type,
  # llama3 factors}); older files have `rope_theta` and `rope_scaling`.
  params = hf.get('rope_parameters')
  if params is not None:
    if not isinstance(params, dict) or 'rope_type' not in params:
      raise HFFormatError(
        f'{path}: rope_parameters={params!r} is not supported (one dict '
        'with rope_type is; per-layer-type RoPE is not).'
      )
    rope_theta = params.get('rope_theta', hf.get('rope_theta', 10000.0))
    scaling = params
  else:
    rope_theta = hf.get('rope_theta', 10000.0)
    scaling = hf.get('rope_scaling')
  rope_scaling = None
  if scaling is not None:
    kind = scaling.get('rope_type', scaling.get('type'))
    if kind == 'llama3':
      rope_scaling = config_lib.RopeScaling(
        factor=float(scaling['factor']),
        low_freq_factor=float(scaling['low_freq_factor']),
        high_freq_factor=float(scaling['high_freq_factor']),
        original_max_position_embeddings=int(
          scaling['original_max_position_embeddings']
        ),
      )
    elif kind != 'default':
      raise HFFormatError(
        f'{path}: rope_scaling type {kind!r} is not supported; supported: '
        '"llama3", "default" or null.'
      )
  n_heads = _require(hf, 'num_attention_heads', path)
  hidden = _require(hf, 'hidden_size', path)
  config = config_lib.LMConfig(
    vocab_size=_require(hf, 'vocab_size', path),
    d_model=hidden,
    n_layers=_require(hf, 'num_hidden_layers', path),
    n_heads=n_heads,
    n_kv_heads=hf.get('num_key_value_heads') or n_heads,
    d_ff=_require(hf, 'intermediate_size', path),
    head_dim=hf.get('head_dim') or hidden // n_heads,
    max_seq_len=hf.get('max_position_embeddings', 2048),
    rope_theta=float(rope_theta),
    rms_norm_eps=float(hf.get('rms_norm_eps', 1e-6)),
    tie_embeddings=bool(hf.get('tie_word_embeddings', False)),
    qkv_bias=family == 'qwen2',
    rope_scaling=rope_scaling,
    dtype=_TORCH_DTYPES[torch_dtype],
    param_dtype=_TORCH_DTYPES[torch_dtype],
  )
  try:
    return config.validate()
  except ValueError as e:
    raise HFFormatError(f'{path}: {e}') from e


def config_to_hf(
  config: config_lib.LMConfig, architecture: str | None = None
) -> dict:
  """Maps an `LMConfig` to a transformers `config.json` dict.

  Args:
    config: the model config.
    architecture: 'Qwen2ForCausalLM' or 'LlamaForCausalLM'; default Qwen2
      when `config.qkv_bias` else Llama.
  """
  if architecture is None:
    architecture = 'Qwen2ForCausalLM' if config.qkv_bias else 'LlamaForCausalLM'
  if architecture not in _ARCHITECTURES:
    raise HFFormatError(
      f'architecture={architecture!r} is not supported; supported: '
      f'{sorted(_ARCHITECTURES)}.'
    )
  family = _ARCHITECTURES[architecture]
  if config.qkv_bias != (family == 'qwen2'):
    raise HFFormatError(
      f'{architecture} needs qkv_bias={family == "qwen2"}, but the config '
      f'has qkv_bias={config.qkv_bias}.'
    )
  hf = {
    'architectures': [architecture],
    'model_type': family,
    'hidden_act': 'silu',
    'hidden_size': config.d_model,
    'intermediate_size': config.d_ff,
    'num_attention_heads': config.n_heads,
    'num_hidden_layers': config.n_layers,
    'num_key_value_heads': config.n_kv_heads,
    'head_dim': config.head_dim,
    'rope_theta': config.rope_theta,
    'rms_norm_eps': config.rms_norm_eps,
    'tie_word_embeddings': config.tie_embeddings,
    'vocab_size': config.vocab_size,
    'max_position_embeddings': config.max_seq_len,
    'torch_dtype': config.param_dtype,
    'rope_scaling': None,
  }
  if family == 'llama':
    hf['attention_bias'] = False
    hf['mlp_bias'] = False
  rs = config.rope_scaling
  if rs is not None:
    hf['rope_scaling'] = {
      'rope_type': 'llama3',
      'factor': rs.factor,
      'low_freq_factor': rs.low_freq_factor,
      'high_freq_factor': rs.high_freq_factor,
      'original_max_position_embeddings': rs.original_max_position_embeddings,
    }
  return hf


def tensor_map(
  config: config_lib.LMConfig,
) -> dict[str, tuple[tuple, bool, tuple[int, ...]]]:
  """HF tensor name -> (NNX state path, transpose?, HF shape)."""
  d, f, v = config.d_model, config.d_ff, config.vocab_size
  q_out = config.n_heads * config.head_dim
  kv_out = config.n_kv_heads * config.head_dim
  out = {
    'model.embed_tokens.weight': (('embed', 'embedding'), False, (v, d)),
    'model.norm.weight': (('norm', 'scale'), False, (d,)),
  }
  if not config.tie_embeddings:
    out['lm_head.weight'] = (('lm_head', 'kernel'), True, (v, d))
  for i in range(config.n_layers):
    hf = f'model.layers.{i}.'
    for name, shape in (
      ('q_proj', (q_out, d)),
      ('k_proj', (kv_out, d)),
      ('v_proj', (kv_out, d)),
      ('o_proj', (d, q_out)),
    ):
      out[f'{hf}self_attn.{name}.weight'] = (
        ('layers', i, 'attn', name, 'kernel'),
        True,
        shape,
      )
      if config.qkv_bias and name != 'o_proj':
        out[f'{hf}self_attn.{name}.bias'] = (
          ('layers', i, 'attn', name, 'bias'),
          False,
          shape[:1],
        )
    for name, shape in (
      ('gate_proj', (f, d)),
      ('up_proj', (f, d)),
      ('down_proj', (d, f)),
    ):
      out[f'{hf}mlp.{name}.weight'] = (
        ('layers', i, 'mlp', name, 'kernel'),
        True,
        shape,
      )
    for name in ('input_layernorm', 'post_attention_layernorm'):
      out[f'{hf}{name}.weight'] = (('layers', i, name, 'scale'), False, (d,))
  return out


def _read_json(path: str) -> Any:
  """Parses a JSON file; a malformed one raises naming the path and line."""
  try:
    with open(path) as fh:
      return json.load(fh)
  except json.JSONDecodeError as e:
    raise HFFormatError(
      f'{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}).'
    ) from e


def _weight_files(directory: str) -> list[str]:
  index = os.path.join(directory, INDEX_FILE)
  if os.path.exists(index):
    data = _read_json(index)
    weight_map = data.get('weight_map') if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
      raise HFFormatError(f'{index}: no "weight_map" object.')
    files = sorted(set(weight_map.values()))
    for name in files:
      if not os.path.exists(os.path.join(directory, name)):
        raise FileNotFoundError(
          f'{index} lists shard {name!r}, which does not exist in {directory}.'
        )
    return [os.path.join(directory, name) for name in files]
  single = os.path.join(directory, SINGLE_FILE)
  if os.path.exists(single):
    return [single]
  found = sorted(n for n in os.listdir(directory) if n.endswith('.safetensors'))
  if len(found) == 1:
    return [os.path.join(directory, found[0])]
  raise FileNotFoundError(
    f'No weights in {directory}: expected {SINGLE_FILE} or {INDEX_FILE} '
    f'(found safetensors files: {found}; PyTorch .bin files are not '
    'supported).'
  )


def read_safetensors(directory: str) -> dict[str, np.ndarray]:
  """Reads every tensor of the directory's safetensors file(s) (numpy)."""
  tensors = {}
  for path in _weight_files(directory):
    try:
      with safetensors.safe_open(path, framework='numpy') as fh:
        for name in fh.keys():
          if name in tensors:
            raise HFFormatError(
              f'{path}: tensor {name!r} appears in two shards.'
            )
          tensors[name] = fh.get_tensor(name)
    except HFFormatError:
      raise
    except Exception as e:  # safetensors' own errors name no file
      raise HFFormatError(
        f'{path}: not a readable safetensors file ({type(e).__name__}: {e}).'
      ) from e
  return tensors


def load_hf_config(directory: str) -> config_lib.LMConfig:
  """The `LMConfig` of a HF directory's config.json (no weights read).

  Raises:
    FileNotFoundError: no config.json.
    HFFormatError: an unreadable or unsupported config (naming the file).
  """
  cfg_path = os.path.join(directory, 'config.json')
  if not os.path.isfile(cfg_path):
    raise FileNotFoundError(f'{cfg_path} does not exist.')
  return config_from_hf(_read_json(cfg_path), cfg_path)


def load_hf(
  directory: str,
  *,
  dtype: str | None = None,
  param_dtype: str | None = None,
  scan_layers: bool = False,
  remat: str = 'none',
) -> tuple[config_lib.LMConfig, transformer.Transformer]:
  """Loads a Llama/Qwen2 HF directory into a `Transformer`.

  Args:
    directory: folder with `config.json` and safetensors weights.
    dtype: compute dtype; default the checkpoint's `torch_dtype`.
    param_dtype: parameter dtype; default the checkpoint's `torch_dtype`.
    scan_layers: build the scanned (stacked-layer) model; see
      `LMConfig.scan_layers`.
    remat: the blocks' rematerialisation policy (`LMConfig.remat`).

  Returns:
    `(config, model)`.

  Raises:
    FileNotFoundError: missing directory, config or weights.
    HFFormatError: unsupported config, missing/unexpected tensors, shapes.
  """
  cfg_path = os.path.join(directory, 'config.json')
  if not os.path.isfile(cfg_path):
    raise FileNotFoundError(f'{cfg_path} does not exist.')
  config = config_from_hf(_read_json(cfg_path), cfg_path)
  changes = {}
  if dtype is not None:
    changes['dtype'] = dtype
  if param_dtype is not None:
    changes['param_dtype'] = param_dtype
  if remat != 'none':
    changes['remat'] = remat
  if changes:
    config = config.replace(**changes).validate()

  tensors = read_safetensors(directory)
  expected = tensor_map(config)
  if config.tie_embeddings and 'lm_head.weight' in tensors:
    head = tensors.pop('lm_head.weight')
    emb = tensors.get('model.embed_tokens.weight')
    if emb is None or head.shape != emb.shape or not np.array_equal(head, emb):
      raise HFFormatError(
        'tie_word_embeddings is true but lm_head.weight differs from '
        'model.embed_tokens.weight.'
      )
  missing = sorted(set(expected) - set(tensors))
  unexpected = sorted(
    n for n in set(tensors) - set(expected) if not _IGNORED.fullmatch(n)
  )
  if missing:
    raise HFFormatError(
      f'{directory}: missing tensors {missing[:8]}'
      f'{" ..." if len(missing) > 8 else ""} ({len(missing)} in all).'
    )
  if unexpected:
    raise HFFormatError(
      f'{directory}: unexpected tensors {unexpected[:8]}'
      f'{" ..." if len(unexpected) > 8 else ""} ({len(unexpected)} in '
      'all) for this config.'
    )

  abstract = nnx.eval_shape(
    lambda: transformer.Transformer(config, rngs=nnx.Rngs(0))
  )
  graphdef, state = nnx.split(abstract)
  pure = state.to_pure_dict()
  pdtype = config.jnp_param_dtype
  for name, (path, transpose, shape) in expected.items():
    array = tensors[name]
    if tuple(array.shape) != shape:
      hint = ''
      if '.k_proj.' in name or '.v_proj.' in name:
        hint = (
          f' (n_kv_heads={config.n_kv_heads} x head_dim={config.head_dim} rows)'
        )
      raise HFFormatError(
        f'Tensor {name!r} has shape {tuple(array.shape)}, expected '
        f'{shape}{hint}.'
      )
    if (
      not np.issubdtype(array.dtype, np.floating)
      and array.dtype != ml_dtypes.bfloat16
    ):
      raise HFFormatError(f'Tensor {name!r} has non-float dtype {array.dtype}.')
    if not np.isfinite(array.astype(np.float32)).all():
      raise HFFormatError(f'Tensor {name!r} contains NaN or Inf values.')
    if transpose:
      array = array.T
    node = pure
    for key in path[:-1]:
      node = node[key]
    node[path[-1]] = jnp.asarray(array, dtype=pdtype)
  state.replace_by_pure_dict(pure)
  model = nnx.merge(graphdef, state)
  model = layout.with_layout(model, scan_layers)
  return model.config, model


def to_hf_tensors(
  model: transformer.Transformer, config: config_lib.LMConfig
) -> dict[str, np.ndarray]:
  """The model's parameters as numpy arrays in HF names and layouts.

  Linear kernels are transposed to `(out, in)`; arrays have the config's
  `param_dtype` (bfloat16 as `ml_dtypes.bfloat16`).
  """
  model = layout.with_layout(model, False)  # HF names are per layer
  config = config.replace(scan_layers=False)
  flat = {
    tuple(p): v[...] for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
  }
  np_dtype = _NP_DTYPES[config.param_dtype]
  tensors = {}
  for name, (path, transpose, shape) in tensor_map(config).items():
    if path not in flat:
      raise HFFormatError(
        f'Model has no parameter {"/".join(map(str, path))}'
        f' for {name!r}; does the config match the model?'
      )
    array = np.asarray(jax.device_get(flat[path])).astype(np_dtype)
    if transpose:
      array = array.T
    if array.shape != shape:
      raise HFFormatError(
        f'Parameter for {name!r} has HF shape {array.shape}, expected {shape}.'
      )
    tensors[name] = np.ascontiguousarray(array)
  return tensors


def save_hf(
  model: transformer.Transformer,
  config: config_lib.LMConfig,
  directory: str,
  *,
  architecture: str | None = None,
  max_shard_bytes: int | None = None,
) -> list[str]:
  """Writes `config.json` and safetensors weights in HF naming.

  Args:
    model: the model to save.
    config: its config (written as `config.json`).
    directory: output folder (created).
    architecture: see `config_to_hf`.
    max_shard_bytes: if set, split into `model-0000i-of-0000n.safetensors`
      shards of at most this many bytes (a tensor is never split) plus
      `model.safetensors.index.json`; otherwise one `model.safetensors`.

  Returns:
    The written weight file paths.
  """
  hf_config = config_to_hf(config, architecture)
  tensors = to_hf_tensors(model, config)
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, 'config.json'), 'w') as fh:
    json.dump(hf_config, fh, indent=2)

  meta = {'format': 'pt'}
  if max_shard_bytes is None:
    path = os.path.join(directory, SINGLE_FILE)
    safetensors.numpy.save_file(tensors, path, metadata=meta)
    return [path]
  shards, current, size = [], {}, 0
  for name, array in tensors.items():
    if current and size + array.nbytes > max_shard_bytes:
      shards.append(current)
      current, size = {}, 0
    current[name] = array
    size += array.nbytes
  shards.append(current)
  weight_map, paths = {}, []
  for i, shard in enumerate(shards):
    fname = f'model-{i + 1:05d}-of-{len(shards):05d}.safetensors'
    paths.append(os.path.join(directory, fname))
    safetensors.numpy.save_file(shard, paths[-1], metadata=meta)
    weight_map.update({name: fname for name in shard})
  total = sum(a.nbytes for a in tensors.values())
  with open(os.path.join(directory, INDEX_FILE), 'w') as fh:
    json.dump(
      {'metadata': {'total_size': total}, 'weight_map': weight_map},
      fh,
      indent=2,
    )
  return paths


def load_hf_matching(
  directory: str, vocab: dict[str, int], field: str = 'config.model.hf_dir'
) -> tuple[config_lib.LMConfig, transformer.Transformer]:
  """Loads a HF directory whose tokenizer is the caller's, id for id.

  An experiment that encodes with its own tokenizer (the embedded worlds'
  `WordTokenizer`) can only start from a checkpoint trained with that
  vocabulary: any other tokenizer would give its token ids other meanings,
  silently.

  Args:
    directory: the Hugging Face directory (config.json, safetensors,
      tokenizer.json).
    vocab: the caller's token -> id map (e.g.
      `tokenizer.hf_tokenizer.get_vocab(True)`).
    field: the config field that named `directory` (for messages).

  Returns:
    `(config, model)`.

  Raises:
    FileNotFoundError: no such directory, or no tokenizer.json in it.
    ValueError: another tokenizer, or a vocabulary smaller than `vocab`.
  """
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'{field} {directory!r} does not exist.')
  theirs = load_hf_tokenizer(directory).get_vocab(True)
  if theirs != vocab:
    differ = sorted(set(theirs.items()) ^ set(vocab.items()))[:5]
    raise ValueError(
      f'{field}: the tokenizer in {directory!r} is not the task tokenizer '
      f'(e.g. {differ}); this experiment encodes with its own word '
      'vocabulary, so start from a checkpoint saved with it '
      '(`task.tokenizer.save(dir)` beside `save_hf`).'
    )
  cfg, model = load_hf(directory)
  if cfg.vocab_size < len(vocab):
    raise ValueError(
      f'{field}: the model in {directory!r} has vocab_size {cfg.vocab_size} '
      f"< the task tokenizer's {len(vocab)}."
    )
  return cfg, model


def load_hf_tokenizer(directory: str):
  """Loads `tokenizer.json` with the `tokenizers` library.

  Returns:
    A `tokenizers.Tokenizer`.
  """
  path = os.path.join(directory, 'tokenizer.json')
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f'{path} does not exist (a fast-tokenizer tokenizer.json is needed; '
      'sentencepiece/tiktoken files are not supported).'
    )
  try:
    return tokenizers.Tokenizer.from_file(path)
  except Exception as e:  # the library's message names no file
    raise HFFormatError(
      f'{path}: not a readable tokenizer.json ({type(e).__name__}: {e}).'
    ) from e
