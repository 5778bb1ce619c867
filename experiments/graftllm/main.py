"""GraftLLM: SkillPacks, routed fusion and continual learning.

  python -m experiments.graftllm.main --workdir=runs/graftllm \
    --config=experiments/graftllm/configs/default.py
"""

from experiments import common_main

if __name__ == '__main__':
  common_main.launch('graftllm.experiment:run', __file__)
