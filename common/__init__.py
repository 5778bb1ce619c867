"""Shared core: decoder LM, sampling, tokenizers, RL maths, synthetic worlds,
optimizers, training loop, metrics and reports. Nothing paper-specific."""
