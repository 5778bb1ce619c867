"""Graph backdoors across paradigms: CP-GBA, baselines and defences.

  python -m experiments.graph_attacks.main --workdir=runs/graph_attacks \
    --config=experiments/graph_attacks/configs/default.py
  python -m experiments.graph_attacks.main --workdir=runs/ga_cora \
    --config=experiments/graph_attacks/configs/cora.py \
    --config.data.data_dir=../shared/data/planetoid
"""

from experiments import common_main

if __name__ == '__main__':
  common_main.launch('graph_attacks.experiment:run', __file__)
