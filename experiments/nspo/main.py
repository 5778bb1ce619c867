"""NSPO: GRPO safety RL with and without the null-space projection.

  python -m experiments.nspo.main --workdir=runs/nspo \
    --config=experiments/nspo/configs/default.py
"""

from experiments import common_main

if __name__ == '__main__':
  common_main.launch('nspo.experiment:run', __file__)
