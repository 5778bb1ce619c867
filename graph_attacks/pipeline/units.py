"""The units of work and the part of the config each one depends on.

Results are cached per unit with `common.metrics.ResultCache`, keyed by a
hash of the unit's own config slice (not the whole config): changing a
setting recomputes exactly the units that read it, and a rerun of the
same config reuses every unit. The experiment's `name` and its list of
seeds are in no slice (renaming a config or adding a seed reuses the rest).

* `seed{s}_clean_{paradigm}`: the clean victim of one paradigm;
* `seed{s}_{attack}`: one attack's triggers and every (defence, paradigm)
  victim trained on the graph it poisons.
"""

from __future__ import annotations

import os

import ml_collections

from common import metrics as metrics_lib
from graph_attacks import victims

UNITS_DIR = 'units'


def _d(cfg) -> dict:
  return cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)


def _inputs_slice(config: ml_collections.ConfigDict, seed: int) -> dict:
  """What `prepare.prepare_seed` reads: data, split seed, projection."""
  return {
    'seed': int(seed),
    'data': _d(config.data),
    'project_dim': config.project_dim,
    'project_epochs': config.project_epochs,
  }


def victim_slice(cfg: ml_collections.ConfigDict, paradigm: str) -> dict:
  """The victim settings `victims.fit_victim(paradigm, ...)` reads."""
  family = victims.paradigm_family(paradigm)
  out = {'seed_offset': cfg.seed_offset}
  if family == 'GSL':
    keys = ('hidden', 'dropout', 'epochs', 'learning_rate', 'weight_decay')
    out.update({k: cfg[k] for k in keys})
  elif family == 'GCL':
    out['grace'] = _d(cfg.grace)
  else:
    out['prompt'] = _d(cfg.prompt)
  return out


def clean_slice(
  config: ml_collections.ConfigDict, seed: int, paradigm: str
) -> dict:
  """Config slice of the unit `seed{seed}_clean_{paradigm}`."""
  out = _inputs_slice(config, seed)
  out['paradigm'] = paradigm
  out['victim'] = victim_slice(config.victim, paradigm)
  out['target'] = config.attack.target  # its no-trigger rate is recorded
  if victims.paradigm_family(paradigm) == 'GPL':
    out['pretrain'] = _d(config.pretrain)
  return out


def attack_slice(
  config: ml_collections.ConfigDict, seed: int, attack: str
) -> dict:
  """Config slice of the unit `seed{seed}_{attack}`."""
  a = config.attack
  own = {k: a[k] for k in a if not isinstance(a[k], ml_collections.ConfigDict)}
  if attack == 'cpgba':
    own['cpgba'] = _d(a.cpgba)
  elif attack == 'crossba':
    own['crossba'] = _d(a.crossba)
  elif attack in ('gta', 'ugba', 'dpgba'):
    own['generator'] = _d(a.generator)
    # A term that is off leaves the key as it was before the term existed
    # (units cached then stay valid); on, it is part of the key.
    if not own['generator'].get('lambda_embed'):
      own['generator'].pop('lambda_embed', None)
  out = _inputs_slice(config, seed)
  out.update(
    attack_name=attack,
    attack=own,
    pretrain=_d(config.pretrain),
    victim=_d(config.victim),
    defence=_d(config.defence),
    defences=list(config.defences),
    paradigms=list(config.paradigms),
    defence_paradigms=list(config.defence_paradigms),
  )
  return out


def clean_unit(seed: int, paradigm: str) -> str:
  return f'seed{seed}_clean_{paradigm}'


def attack_unit(seed: int, attack: str) -> str:
  return f'seed{seed}_{attack}'


def seed_units(config: ml_collections.ConfigDict, seed: int, root: str):
  """`(unit name, ResultCache, kind, what)` for every unit of one seed.

  `kind` is 'clean' (what = paradigm) or 'attack' (what = attack name);
  clean units come first, then the attacks in config order.
  """
  out = []
  for p in config.paradigms:
    cache = metrics_lib.ResultCache(root, clean_slice(config, seed, p))
    out.append((clean_unit(seed, p), cache, 'clean', p))
  for a in config.attacks:
    cache = metrics_lib.ResultCache(root, attack_slice(config, seed, a))
    out.append((attack_unit(seed, a), cache, 'attack', a))
  return out


def units_root(workdir: str) -> str:
  return os.path.join(workdir, UNITS_DIR)
