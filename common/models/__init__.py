"""Decoder-only LM (Llama/Qwen2 architecture) in Flax NNX, KV cache, HF I/O.

See `common/models/README.md` for the forward API, the `capture` option and
the Hugging Face tensor-name mapping.
"""

from common.models.config import PRESETS
from common.models.config import REMAT_POLICIES
from common.models.config import LMConfig
from common.models.config import RopeScaling
from common.models.config import build_config
from common.models.config import check_spec
from common.models.config import get_preset
from common.models.functional import ApplyFn
from common.models.functional import apply_fn
from common.models.functional import capture_fn
from common.models.functional import merge
from common.models.functional import mlp_hidden_grads
from common.models.functional import split
from common.models.functional import token_logprobs
from common.models.hf import HFFormatError
from common.models.hf import config_from_hf
from common.models.hf import config_to_hf
from common.models.hf import load_hf
from common.models.hf import load_hf_config
from common.models.hf import load_hf_matching
from common.models.hf import load_hf_tokenizer
from common.models.hf import save_hf
from common.models.hf import to_hf_tensors
from common.models.kv_cache import KVCache
from common.models.kv_cache import init_cache
from common.models.layout import stack_layers
from common.models.layout import unstack_layers
from common.models.layout import with_layout
from common.models.transformer import CAPTURE_NAMES
from common.models.transformer import LMOutput
from common.models.transformer import Transformer

__all__ = [
  'ApplyFn',
  'CAPTURE_NAMES',
  'HFFormatError',
  'KVCache',
  'LMConfig',
  'LMOutput',
  'PRESETS',
  'REMAT_POLICIES',
  'RopeScaling',
  'Transformer',
  'apply_fn',
  'build_config',
  'check_spec',
  'capture_fn',
  'config_from_hf',
  'config_to_hf',
  'get_preset',
  'init_cache',
  'load_hf',
  'load_hf_config',
  'load_hf_matching',
  'load_hf_tokenizer',
  'merge',
  'mlp_hidden_grads',
  'save_hf',
  'split',
  'stack_layers',
  'to_hf_tensors',
  'token_logprobs',
  'unstack_layers',
  'with_layout',
]
