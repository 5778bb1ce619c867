"""Paper: Cora-scale settings of the released code (accelerators).

CSBM 'cora_like' (2708 nodes, 1433 features) by default; point
`data.source='planetoid'` and `data.data_dir` at the Planetoid files for
Cora itself. Settings follow novdream/CP-GBA's train.sh: feature projection
to 1433, pre-trained GNN hidden 128 x 3 layers, K = 350 triggers of 5
nodes, 50 poisoned nodes, victims for 1000 iterations, 11 seeds.
"""

from experiments.graph_attacks.configs import full


def get_config():
  c = full.get_config()
  c.name = 'paper'
  c.seeds = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
  c.data.csbm_config = 'cora_like'
  c.defence_paradigms = ('gcn', 'gat', 'sage', 'grace')
  c.project_dim = 1433
  c.project_epochs = 1000
  c.pretrain.update(dict(hidden=128, n_layers=3, epochs=1000))
  a = c.attack
  a.num_poison = 50
  a.outer_size = 512
  a.surrogate_hidden = 128
  a.surrogate_epochs = 400
  a.generator.update(
    dict(epochs=400, inner_steps=1, learning_rate=1e-3, lambda_embed=3.0)
  )
  a.cpgba.update(
    dict(
      num_triggers=350,
      max_subgraphs=None,
      homo_hidden=128,
      epochs=400,
      learning_rate=5e-4,
      lambda_homo=10.0,
    )
  )
  # The released CrossBA code has no dormancy term.
  a.crossba.reg_dormant = 0.0
  v = c.victim
  v.hidden = 128
  v.epochs = 1000
  v.learning_rate = 5e-4
  v.grace.update(
    dict(
      hidden=256,
      proj=256,
      epochs=1000,
      probe_epochs=1000,
      probe_learning_rate=1e-3,
      probe_weight_decay=0.1,
      p_edge=(0.1, 0.5),
      p_feat=(0.1, 0.5),
    )
  )
  v.prompt.epochs = 1000
  v.rigbd.retrain_epochs = 400
  return c
