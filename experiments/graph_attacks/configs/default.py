"""Default (the main job): `full` cut to one seed, four victim paradigms
and defences on the GCN victim only, to fit a few minutes on 2 CPU cores.
Every attack and defence still runs; `full.py` has the two-seed table."""

from experiments.graph_attacks.configs import full


def get_config():
  c = full.get_config()
  c.name = 'default'
  c.seeds = (0,)
  c.paradigms = ('gcn', 'sage', 'grace', 'gprompt')
  c.defence_paradigms = ('gcn',)
  return c
