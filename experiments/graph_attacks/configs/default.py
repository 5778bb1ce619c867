"""Default (the main job): every attack, defence and paradigm but GAT, on
3 seeds, with the training budgets of `full` halved to fit a few minutes on
2 CPU cores.

Against `full`: seeds (0, 1, 2) instead of (0, 1); paradigms GCN, SAGE,
GRACE, Gprompt (no GAT); defences on the GCN victim only; trigger training
40 epochs (80), supervised victims 100 epochs (200), GRACE 50 (100) and
its probe 100 (200), prompts 150 (300), RIGBD's retraining 100 (200), the
OD autoencoder 100 epochs (300). Three seeds give the lift's paired
bootstrap interval (`common.stats`, `MIN_SEEDS`); `full.py` keeps the
longer budgets.
"""

from experiments.graph_attacks.configs import full


def get_config():
  c = full.get_config()
  c.name = 'default'
  c.seeds = (0, 1, 2)
  c.paradigms = ('gcn', 'sage', 'grace', 'gprompt')
  c.defence_paradigms = ('gcn',)
  c.attack.generator.epochs = 40
  c.attack.cpgba.epochs = 40
  v = c.victim
  v.epochs = 100
  v.grace.epochs = 50
  v.grace.probe_epochs = 100
  v.prompt.epochs = 150
  v.rigbd.retrain_epochs = 100
  c.defence.od_epochs = 100
  return c
