"""TPAW: SFT vs SPIN vs TPAW (with ablations) over paired seeds.

  python -m experiments.tpaw.main --workdir=runs/tpaw \
    --config=experiments/tpaw/configs/default.py
"""

from experiments import common_main

if __name__ == '__main__':
  common_main.launch('tpaw.experiment:run', __file__)
