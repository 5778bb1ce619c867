"""The stages of `pica.experiment.run`, one concept per module.

`context` (world, tokenizer, retriever, model, mesh, the one sampler),
`optimizer`, `sft_stage` (golden-trace SFT on `common.train.fit`),
`hazard_stage` (CRM reward model on `fit`), `rl_stage` (one reward arm on
`common.train.fit_on_policy`, GRPO or PPO), `evaluation` (greedy EM per
split) and `report` (the `metrics.json` content).
"""

from pica.stages import context
from pica.stages import evaluation
from pica.stages import hazard_stage
from pica.stages import optimizer
from pica.stages import report
from pica.stages import rl_stage
from pica.stages import sft_stage

__all__ = [
  'context',
  'evaluation',
  'hazard_stage',
  'optimizer',
  'report',
  'rl_stage',
  'sft_stage',
]
