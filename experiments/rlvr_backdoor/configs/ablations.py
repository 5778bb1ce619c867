"""rlvr_backdoor ablations: the default plus shadow-vs-random selection and
the poison-fraction sweep (1% and 2%: K = 4 and 8 of the 413-prompt pool).

About 2x the default's time (7 RL arms instead of 4). Every arm starts
from the seed's warm start with fixed sampling keys, so the arms the two
configs share give the same numbers.

  python -m experiments.rlvr_backdoor.main \
    --config=experiments/rlvr_backdoor/configs/ablations.py
"""

from experiments.rlvr_backdoor.configs import default


def get_config():
  c = default.get_config()
  c.name = 'ablations'
  c.arms = ('clean', 'poisoned', 'sft_backdoor', 'deterministic', 'random')
  c.poison.sweep_fractions = (0.01, 0.02)
  return c
