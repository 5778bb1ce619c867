"""The stages of the cross-paradigm experiment (`graph_attacks.experiment`).

* `prepare`: the dataset, each seed's split, optional feature projection,
  training graph and ASR evaluation batch, and the link-prediction
  pre-trained GNN;
* `clean`: clean-victim accuracy rows (no attack);
* `attack_run`: one (seed, attack) unit, every defence x paradigm victim;
* `units`: which part of the config each unit's cached result depends on;
* `summary`: result rows into `metrics.json` tables, curves and summary.
"""
