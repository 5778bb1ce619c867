"""PiCA: SFT, hazard model, RL with outcome-only vs PiCA step rewards.

  python -m experiments.pica.main --workdir=runs/pica \
    --config=experiments/pica/configs/tiny.py
"""

from experiments import common_main

if __name__ == '__main__':
  common_main.launch('pica.experiment:run', __file__)
