"""e3tir ablations: the default's three paradigms plus E3-TIR without
branching, without AAGD and without the hybrid advantage.

About twice the default's time (three more E3-TIR warm-ups per seed). Every
arm starts from its seed's base LM with fixed sampling keys, so the arms
the two configs share give the same numbers.

  python -m experiments.e3tir.main \
    --config=experiments/e3tir/configs/ablations.py
"""

from experiments.e3tir.configs import default


def get_config():
  c = default.get_config()
  c.name = 'ablations'
  c.arms = ('zero_rl', 'sft_rl', 'sft_rl_matched', 'e3tir', 'e3tir_no_branch',
            'e3tir_no_aagd', 'e3tir_no_hybrid')  # fmt: skip
  return c
