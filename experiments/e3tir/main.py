"""E3-TIR: expert prefixes, entropy-anchor branches, mixed policy optimisation.

  python -m experiments.e3tir.main --workdir=runs/e3tir \
    --config=experiments/e3tir/configs/default.py
"""

from experiments import common_main

if __name__ == '__main__':
  common_main.launch('e3tir.experiment:run', __file__)
