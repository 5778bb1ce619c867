"""ReaderLM-v2: synthesis pipeline, staged recipe, evaluation.

  python -m experiments.readerlm.main --workdir=runs/readerlm \
    --config=experiments/readerlm/configs/default.py
"""

from experiments import common_main

if __name__ == '__main__':
  common_main.launch('readerlm.experiment:run', __file__)
