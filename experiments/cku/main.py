"""CKU: gradient-ascent unlearning with and without neuron locking.

  python -m experiments.cku.main --workdir=runs/cku \
    --config=experiments/cku/configs/default.py
"""

from experiments import common_main

if __name__ == '__main__':
  common_main.launch('cku.experiment:run', __file__)
