"""GraftLLM: SkillPacks by module-aware delta compression, routed fusion.

Pipeline: `delta.extract_delta` (or `extract_delta_hf`) -> `compress.compress`
(magnitude pruning for embeddings / LM head, truncated SVD with the
explained-variance rank rule for attention, SVD + mixed-bit GPTQ for the MLP)
-> `skillpack.SkillPack` (`save` / `load`: packed integers in safetensors)
-> `fusion.SkillLibrary` (explicit routing by task id, implicit routing with
`router`; add / remove packs) beside the baselines: `merging` (Task
Arithmetic, TIES, DARE) and `lora` (LoRA at a byte budget). See
graftllm/README.md.
"""

from graftllm import bitpack
from graftllm import compress
from graftllm import delta
from graftllm import fusion
from graftllm import lora
from graftllm import merging
from graftllm import prune
from graftllm import quant
from graftllm import router
from graftllm import skillpack
from graftllm import svd
from graftllm.compress import CompressionConfig
from graftllm.delta import ArchitectureMismatch
from graftllm.delta import extract_delta
from graftllm.delta import extract_delta_hf
from graftllm.fusion import ExplicitRouter
from graftllm.fusion import SkillLibrary
from graftllm.skillpack import SkillPack
from graftllm.skillpack import SkillPackError

__all__ = [
  'ArchitectureMismatch',
  'CompressionConfig',
  'ExplicitRouter',
  'SkillLibrary',
  'SkillPack',
  'SkillPackError',
  'bitpack',
  'compress',
  'delta',
  'extract_delta',
  'extract_delta_hf',
  'fusion',
  'lora',
  'merging',
  'prune',
  'quant',
  'router',
  'skillpack',
  'svd',
]
