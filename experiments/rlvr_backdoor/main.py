"""ACB: the asymmetric-reward backdoor in RLVR (benign stand-ins) + defences.

  python -m experiments.rlvr_backdoor.main --workdir=runs/rlvr_backdoor \
    --config=experiments/rlvr_backdoor/configs/default.py
"""

from experiments import common_main

if __name__ == '__main__':
  common_main.launch('rlvr_backdoor.experiment:run', __file__)
