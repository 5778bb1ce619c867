"""Tiny: a short run on the 240-node CSBM graph (tests, CI).

Most of its time is compilation. The victims train for 200 epochs (as the
supervised ones in `full`; a few seconds here): with 20 they stayed at
chance accuracy and no backdoor could show. With 200 the clean GCN reaches
about 0.8 CA, and CP-GBA's triggers turn most attack nodes to the target
class on the poisoned GCN and prompt victims (the end-to-end test checks
this against the clean victims' no-trigger rate)."""

from experiments.graph_attacks.configs import full


def get_config():
  c = full.get_config()
  c.name = 'tiny'
  c.seeds = (0,)
  c.data.csbm_config = 'tiny'
  c.attacks = ('sba_samp', 'cpgba', 'crossba')
  c.paradigms = ('gcn', 'grace', 'gprompt')
  c.defences = ('none', 'prune')
  c.defence_paradigms = ('gcn',)
  c.pretrain.epochs = 20
  c.pretrain.hidden = 16
  a = c.attack
  a.num_poison = 6
  a.outer_size = 16
  a.surrogate_hidden = 16
  a.surrogate_epochs = 20
  a.generator.epochs = 3
  a.cpgba.update(
    dict(
      num_triggers=12,
      max_subgraphs=300,
      homo_hidden=16,
      label_centers=20,
      epochs=3,
      select_every=2,
      select_epochs=20,
      inner_steps=2,
    )
  )
  a.crossba.epochs = 20
  v = c.victim
  v.hidden = 16
  v.grace.update(dict(hidden=16, proj=16, epochs=10))
  v.prompt.epochs = 200
  v.rigbd.retrain_epochs = 20
  c.defence.od_epochs = 20
  return c
