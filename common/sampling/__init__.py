"""Batched KV-cache generation for `common.models.Transformer`.

`Sampler(model, capacity)` gives jitted `prefill`, `generate` and `append`
(multi-turn tool use without recomputing the prefix); the same steps are
available as pure functions taking an NNX model. Log-probs are under the
model's raw logits (temperature 1, before top-k/top-p), as RL losses need.
"""

from common.sampling.filters import choose_tokens
from common.sampling.filters import repetition_penalty
from common.sampling.filters import sampling_logits
from common.sampling.filters import top_k_filter
from common.sampling.filters import top_p_filter
from common.sampling.sampler import FINISH_EOS
from common.sampling.sampler import FINISH_LENGTH
from common.sampling.sampler import FINISH_NAMES
from common.sampling.sampler import FINISH_NONE
from common.sampling.sampler import FINISH_STOP
from common.sampling.sampler import GenerationConfig
from common.sampling.sampler import GenerationOutput
from common.sampling.sampler import Sampler
from common.sampling.sampler import SamplerState
from common.sampling.sampler import append
from common.sampling.sampler import finish_reason_names
from common.sampling.sampler import generate
from common.sampling.sampler import prefill
from common.sampling.sampler import prompt_seen

__all__ = [
  'FINISH_EOS',
  'FINISH_LENGTH',
  'FINISH_NAMES',
  'FINISH_NONE',
  'FINISH_STOP',
  'GenerationConfig',
  'GenerationOutput',
  'Sampler',
  'SamplerState',
  'append',
  'choose_tokens',
  'finish_reason_names',
  'generate',
  'prefill',
  'prompt_seen',
  'repetition_penalty',
  'sampling_logits',
  'top_k_filter',
  'top_p_filter',
]
