"""Runs the graph-attacks experiment.

  python -m experiments.graph_attacks.main \
    --config=experiments/graph_attacks/configs/default.py --workdir=runs/ga
  python -m experiments.graph_attacks.main \
    --config=experiments/graph_attacks/configs/cora.py \
    --config.data.data_dir=../shared/data/planetoid --workdir=runs/ga_cora
"""

import json

from absl import app
from absl import flags
from ml_collections import config_flags

from graph_attacks import experiment

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  metrics = experiment.run(_CONFIG.value, _WORKDIR.value)
  print(json.dumps(metrics['summary'], indent=1))


if __name__ == '__main__':
  app.run(main)
