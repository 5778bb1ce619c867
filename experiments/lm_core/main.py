"""lm_core: SFT then GRPO of a tiny LM on knowledge-world 1-hop QA.

  python -m experiments.lm_core.main --workdir=runs/lm_core \
    --config=experiments/lm_core/configs/tiny.py
"""

from experiments import common_main

if __name__ == '__main__':
  common_main.launch('common.examples.lm_core:run', __file__)
