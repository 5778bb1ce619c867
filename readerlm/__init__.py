"""ReaderLM-v2 (Jina AI, 2025): HTML to Markdown and JSON.

Input preparation (`prompt`), the paper's metrics (`metrics`, `json_eval`),
synthetic pages (`pages`), peer converters as drafters (`converters`), the
rule refiner/critic (`refine`), backends behind one `generate` protocol
(`backends`), the Draft -> Refine -> Critique pipeline (`pipeline`), the
training objectives (`objectives`), real pages (`realpages`) and the
experiment (`experiment.run`). The byte-level BPE tokenizer is
`common.tokenizers.bpe`.
"""

from readerlm import backends
from readerlm import converters
from readerlm import json_eval
from readerlm import metrics
from readerlm import objectives
from readerlm import pages
from readerlm import pipeline
from readerlm import prompt
from readerlm import realpages
from readerlm import refine
from readerlm import roles
from readerlm.prompt import chat_prompt
from readerlm.prompt import clean_html
from readerlm.prompt import decode_html
from readerlm.prompt import instruction_prompt

__all__ = [
  'backends', 'chat_prompt', 'clean_html', 'converters',
  'decode_html', 'instruction_prompt', 'json_eval', 'metrics', 'objectives',
  'pages', 'pipeline', 'prompt', 'realpages', 'refine', 'roles',
]  # fmt: skip
