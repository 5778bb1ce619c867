"""Tests for the experiment configs, validation, the unit cache and a tiny
end-to-end run."""

import json

import pytest

from common import metrics as metrics_lib
from experiments.graph_attacks.configs import cora
from experiments.graph_attacks.configs import default
from experiments.graph_attacks.configs import full
from experiments.graph_attacks.configs import paper
from experiments.graph_attacks.configs import tiny
from experiments.registry import EXPERIMENTS
from graph_attacks import experiment
from graph_attacks.pipeline import attack_run
from graph_attacks.pipeline import clean
from graph_attacks.pipeline import prepare
from graph_attacks.pipeline import units


def test_configs_construct_and_validate():
  for mod in (tiny, default, full, paper, cora):
    c = mod.get_config()
    if c.data.source == 'planetoid':
      c.data.data_dir = '/some/planetoid'
    experiment.validate_config(c)
  assert paper.get_config().attack.cpgba.num_triggers == 350
  assert paper.get_config().pretrain.n_layers == 3
  assert cora.get_config().data.source == 'planetoid'
  assert EXPERIMENTS['graph_attacks'] == 'graph_attacks.experiment:run'


def _set(c, field, value):
  *parents, leaf = field.split('.')
  for p in parents:
    c = c[p]
  with c.unlocked():
    c[leaf] = value


@pytest.mark.parametrize(
  'field,value,match',
  [
    ('attacks', ('cpgba', 'nope'), "attacks: unknown name 'nope'"),
    ('paradigms', ('gcn', 'gin'), "paradigms: unknown name 'gin'"),
    ('defences', ('none', 'magic'), "defences: unknown name 'magic'"),
    ('seeds', (), r'config.seeds=\(\) is invalid'),
    ('seeds', (0, 0), 'without repeats'),
    ('defence_paradigms', ('gat',), "paradigm 'gat' is not in"),
    ('victim.lr', 0.01, r"unknown field 'victim.lr'.*learning_rate"),
    ('pretrain.num_layers', 2, 'did you mean pretrain.n_layers'),
    ('victim.learning_rate', -0.1, r'victim.learning_rate=-0.1.*\(0.0, inf\)'),
    ('victim.dropout', 1.0, r'victim.dropout=1.0 .*\[0.0, 1.0\)'),
    ('victim.epochs', 0, r'victim.epochs=0 .*integer >= 1'),
    ('attack.num_poison', 0, r'num_poison=0 .*integer >= 1'),
    ('victim.grace.p_edge', (0.2,), 'p_edge=.*exactly 2 items'),
    ('attack.cpgba.max_subgraphs', 0, r'integer >= 1 \(or None\)'),
    ('defence.od_percentile', 100.0, 'od_percentile=100.0'),
    ('data.csbm_config', 'huge', "csbm_config='huge'"),
  ],
)
def test_bad_config_named(field, value, match):
  c = tiny.get_config()
  _set(c, field, value)
  with pytest.raises(ValueError, match=match):
    experiment.validate_config(c)


def test_bad_config_fails_before_any_work(tmp_path):
  c = tiny.get_config()
  _set(c, 'victim.lr', 0.01)
  with pytest.raises(ValueError, match='victim.lr'):
    experiment.run(c, str(tmp_path))
  assert list(tmp_path.iterdir()) == []  # nothing generated or trained


def test_bad_data_source(tmp_path):
  c = tiny.get_config()
  c.data.source = 'planetoid'
  with pytest.raises(ValueError, match='needs config.data.data_dir'):
    experiment.validate_config(c)
  c.data.source = 'ogb'
  with pytest.raises(ValueError, match="unknown data.source 'ogb'"):
    experiment.load_data(c.data, str(tmp_path))
  c.data.source = 'planetoid'
  c.data.data_dir = str(tmp_path / 'missing')
  with pytest.raises(FileNotFoundError, match='does not exist'):
    experiment.load_data(c.data, str(tmp_path))


def _keys(c, seed=0):
  return {
    name: cache.key for name, cache, _, _ in units.seed_units(c, seed, '')
  }


def test_unit_keys_follow_what_each_unit_reads():
  c = tiny.get_config()
  base = _keys(c)
  assert set(base) == {
    'seed0_clean_gcn',
    'seed0_clean_grace',
    'seed0_clean_gprompt',
    'seed0_sba_samp',
    'seed0_cpgba',
    'seed0_crossba',
  }
  renamed = tiny.get_config()
  renamed.name = 'other'
  renamed.seeds = (0, 5)
  assert _keys(renamed) == base  # name and seed list are in no slice

  def changed(field, value):
    c2 = tiny.get_config()
    _set(c2, field, value)
    new = _keys(c2)
    return {u for u in base if new[u] != base[u]}

  every_attack = {'seed0_sba_samp', 'seed0_cpgba', 'seed0_crossba'}
  assert changed('victim.grace.learning_rate', 0.5) == every_attack | {
    'seed0_clean_grace'
  }
  assert changed('pretrain.epochs', 3) == every_attack | {'seed0_clean_gprompt'}
  assert changed('attack.cpgba.epochs', 7) == {'seed0_cpgba'}
  assert changed('attack.crossba.epochs', 7) == {'seed0_crossba'}
  assert changed('defence.prune_threshold', 0.3) == every_attack
  assert changed('data.csbm_config', 'small') == set(base)
  assert _keys(c, seed=1) != base


class _Counting:
  """Stand-ins for the stages that record what they were asked to do."""

  def __init__(self, monkeypatch):
    self.calls = []
    monkeypatch.setattr(prepare, 'load_data', self.load_data)
    monkeypatch.setattr(experiment, 'load_data', self.load_data)
    monkeypatch.setattr(prepare, 'prepare_seed', self.prepare_seed)
    monkeypatch.setattr(clean, 'clean_row', self.clean_row)
    monkeypatch.setattr(attack_run, 'run_seed_attack', self.run_seed_attack)

  def load_data(self, cfg, workdir):
    self.calls.append('data')
    return 'data'

  def prepare_seed(self, config, data, seed):
    self.calls.append(f'prepare{seed}')
    return seed

  def clean_row(self, config, seed, paradigm):
    self.calls.append(f'clean_{paradigm}')
    return {'paradigm': paradigm, 'ca': 0.9, 'target_rate': 0.1}

  def run_seed_attack(self, config, seed, name):
    self.calls.append(name)
    asr = 0.8 if name == 'cpgba' else 0.3
    rows = [
      {
        'attack': name,
        'defence': d,
        'paradigm': p,
        'asr': asr,
        'ca': 0.5,
        'flagged_poison_frac': None,
      }
      for d, p in attack_run.victim_runs(config)
    ]
    return {
      'rows': rows,
      'attack_seconds': 2.0,
      'eval_seconds': 0.5,
      'eval_subgraphs': 100,
      'history': {'outer_asr': [0.1, 0.5, asr], 'outer_loss': [3, 2, 1]},
    }

  def take(self):
    out, self.calls = self.calls, []
    return out


def test_rerun_reuses_same_config_and_recomputes_changed_units(
  tmp_path, monkeypatch
):
  stages = _Counting(monkeypatch)
  c = tiny.get_config()
  first = experiment.run(c, str(tmp_path))
  assert stages.take() == [
    'data',
    'prepare0',
    'clean_gcn',
    'clean_grace',
    'clean_gprompt',
    'sba_samp',
    'cpgba',
    'crossba',
  ]
  # The same config: every unit comes from the cache, nothing is prepared.
  again = experiment.run(tiny.get_config(), str(tmp_path))
  assert stages.take() == []
  assert again['tables'] == first['tables']
  assert again['summary']['cpgba_GSL_asr'] == first['summary']['cpgba_GSL_asr']
  # A changed setting: the units that read it, and only those, recompute.
  c = tiny.get_config()
  c.attack.cpgba.epochs = 4
  experiment.run(c, str(tmp_path))
  assert stages.take() == ['data', 'prepare0', 'cpgba']
  c.victim.prompt.learning_rate = 0.05
  experiment.run(c, str(tmp_path))
  assert stages.take() == [
    'data',
    'prepare0',
    'clean_gprompt',
    'sba_samp',
    'cpgba',
    'crossba',
  ]
  # Back to the first config: the units the changed configs overwrote
  # recompute; the GCN and GRACE clean units are still the first config's.
  experiment.run(tiny.get_config(), str(tmp_path))
  assert stages.take() == [
    'data',
    'prepare0',
    'clean_gprompt',
    'sba_samp',
    'cpgba',
    'crossba',
  ]


def test_collect_summarises_cached_units_and_names_missing(tmp_path):
  c = tiny.get_config()
  root = units.units_root(str(tmp_path))
  rows = [
    {
      'attack': 'cpgba',
      'defence': d,
      'paradigm': p,
      'asr': asr,
      'flip_asr': asr,
      'clean_asr': 0.1,
      'clean_flip_asr': 0.0,
      'ca': 0.5,
      'clean_ca': 0.75,
      'flagged_poison_frac': None,
    }
    for d, p, asr in (
      ('none', 'gcn', 0.8),
      ('none', 'grace', 0.4),
      ('none', 'gprompt', 0.6),
      ('prune', 'gcn', 0.2),
    )
  ]
  metrics_lib.ResultCache(root, units.attack_slice(c, 0, 'cpgba')).put(
    'seed0_cpgba',
    {
      'rows': rows,
      'attack_seconds': 2.0,
      'eval_seconds': 0.5,
      'eval_subgraphs': 100,
      'history': {'outer_asr': [0.2, 0.6], 'outer_loss': [2.0, 1.0]},
    },
  )
  for p in c.paradigms:
    metrics_lib.ResultCache(root, units.clean_slice(c, 0, p)).put(
      units.clean_unit(0, p), {'paradigm': p, 'ca': 0.9, 'target_rate': 0.1}
    )
  # A unit computed under another config is not this config's result.
  other = tiny.get_config()
  other.attack.num_poison = 7
  metrics_lib.ResultCache(root, units.attack_slice(other, 0, 'sba_samp')).put(
    'seed0_sba_samp', {'rows': []}
  )
  m = experiment.collect(c, str(tmp_path))
  assert m['summary']['cpgba_GSL_asr'] == 0.8
  assert m['summary']['cpgba_GCL_asr'] == 0.4
  assert m['summary']['clean_gcn_target_rate'] == 0.1
  assert m['summary']['asr_eval_subgraphs_per_s'] == 200.0
  assert 'sba_samp_GSL_asr' not in m['summary']
  assert any('seed0_sba_samp' in n for n in m['notes'])
  paper_rows = m['tables'][-1]['rows']
  assert [
    'cpgba',
    'GSL',
    '0.800 ± 0.000',
    '0.700 ± 0.000',
    '0.500 ± 0.000',
    '0.97',
    '0.81',
  ] in paper_rows
  assert m['summary']['cpgba_GSL_lift'] == 0.7
  prune = m['tables'][1]
  # attack, paradigm, poisoned / clean-victim ASR, lift, flip-ASR (poisoned,
  # clean), CA, CA drop (0.75 - 0.5), verdict (one seed: not shown).
  assert prune['rows'][0][:4] == [
    'cpgba',
    'gcn',
    '0.200 ± 0.000',
    '0.100 ± 0.000',
  ]
  assert prune['rows'][0][4].startswith('+0.100 [+0.100, +0.100]')
  assert prune['rows'][0][8] == '0.250 ± 0.000'
  assert prune['rows'][0][9] == 'not shown (< 3 seeds)'
  assert m['summary']['cpgba_prune_gcn_lift'] == 0.1
  on_disk = json.loads((tmp_path / 'metrics.json').read_text())
  assert on_disk['curves'][0]['series']['cpgba']['y'] == [0.2, 0.6]
  assert (tmp_path / 'trigger_training_asr.png').exists()


@pytest.mark.slow
def test_tiny_run_shows_the_backdoor(tmp_path, monkeypatch):
  c = tiny.get_config()
  metrics = experiment.run(c, str(tmp_path))
  on_disk = json.loads((tmp_path / 'metrics.json').read_text())
  assert on_disk == metrics
  assert on_disk['config_name'] == 'tiny'
  s = on_disk['summary']
  # The clean victims predict the target class for few attack nodes (about
  # the class share, 1/4; measured 0.21); with CP-GBA's triggers the
  # poisoned GCN and prompt victims predict it for most (measured 0.88 and
  # 0.71). Rates of magnitude 1 over 24 attack nodes (0.04 per node): a
  # margin of 0.3 is 7 nodes.
  for par, fam in (('gcn', 'GSL'), ('gprompt', 'GPL')):
    chance = s[f'clean_{par}_target_rate']
    assert chance < 0.4, par
    assert s[f'cpgba_{fam}_asr'] > chance + 0.3, par
  # Poisoning 6 of 48 labelled nodes keeps the GCN's clean accuracy near
  # the clean victim's (measured 0.71 vs 0.79 on 24 clean-test nodes;
  # tolerance 0.17, 4 nodes), and well above chance (0.25).
  assert s['clean_gcn_ca'] > 0.6
  assert abs(s['cpgba_GSL_ca'] - s['clean_gcn_ca']) <= 0.17
  for name in ('trigger_training_asr.png', 'asr_by_paradigm.png'):
    assert (tmp_path / name).exists()
  # The same config again: every unit is reused, nothing trains.
  calls = []
  for mod, name in ((attack_run, 'run_seed_attack'), (clean, 'clean_row')):
    monkeypatch.setattr(mod, name, lambda *a, n=name: calls.append(n))
  again = experiment.run(c, str(tmp_path))
  assert calls == []
  assert again['tables'] == metrics['tables']
  # Replayed from the cache, so exactly equal.
  assert again['summary']['cpgba_GSL_asr'] == s['cpgba_GSL_asr']
