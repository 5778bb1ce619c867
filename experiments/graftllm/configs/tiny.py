"""GraftLLM tiny: tests and CI (seconds of compute; one seed, a smoke test).

Measured: about 55 s of CPU for a run plus its cached rerun (the slow
end-to-end test); wall time is longer on a loaded machine.
"""

from experiments.graftllm.configs import default


def get_config():
  c = default.get_config()
  c.name = 'tiny'
  c.seeds = (0,)
  c.task.update({'num_knowledge': 16, 'num_arithmetic': 16})
  c.model.update({'d_model': 32, 'n_layers': 1, 'd_ff': 64})
  c.base.update({'steps': 150, 'batch_size': 16})
  c.finetune.update({'steps': 60, 'batch_size': 8})
  c.dpo.steps = 10
  c.lora.enabled = False  # graftllm.lora is unit-tested; saves two fits
  c.sweep.update({'betas': (0.5,), 'alphas': (0.3,), 'ablations': ('uniform',)})
  c.sweep.bit_groups = {'all2': ((2, -1),)}
  c.router.steps = 30
  c.calibration_samples = 16
  return c
