"""Worked examples of the core, run as experiments.

lm_core: SFT then GRPO of a tiny LM on the knowledge world's 1-hop QA,
  the end-to-end check of the shared LM pieces (registered as the
  `lm_core` experiment).
"""
