"""Tests for the experiment configs, validation and a tiny end-to-end run."""

import json
import os

import pytest

from experiments.graph_attacks.configs import cora
from experiments.graph_attacks.configs import default
from experiments.graph_attacks.configs import full
from experiments.graph_attacks.configs import paper
from experiments.graph_attacks.configs import tiny
from experiments.registry import EXPERIMENTS
from graph_attacks import experiment


def test_configs_construct_and_validate():
  for mod in (tiny, default, full, paper, cora):
    c = mod.get_config()
    experiment.validate_config(c)
  assert paper.get_config().attack.cpgba.num_triggers == 350
  assert cora.get_config().data.source == 'planetoid'
  assert EXPERIMENTS['graph_attacks'] == 'graph_attacks.experiment:run'


@pytest.mark.parametrize(
  'field,value,match',
  [
    ('attacks', ('cpgba', 'nope'), "unknown attack 'nope'"),
    ('paradigms', ('gcn', 'gin'), "unknown paradigm 'gin'"),
    ('defences', ('none', 'magic'), "unknown defence 'magic'"),
    ('seeds', (), 'seeds is empty'),
    ('defence_paradigms', ('gat',), "defence paradigm 'gat'"),
  ],
)
def test_bad_config_named(field, value, match):
  c = tiny.get_config()
  setattr(c, field, value)
  with pytest.raises(ValueError, match=match):
    experiment.validate_config(c)


def test_bad_data_source(tmp_path):
  c = tiny.get_config()
  c.data.source = 'ogb'
  with pytest.raises(ValueError, match="unknown data.source 'ogb'"):
    experiment.load_data(c.data, str(tmp_path))
  c.data.source = 'planetoid'
  with pytest.raises(ValueError, match='data_dir'):
    experiment.load_data(c.data, str(tmp_path))
  c.data.data_dir = str(tmp_path / 'missing')
  with pytest.raises(FileNotFoundError, match='does not exist'):
    experiment.load_data(c.data, str(tmp_path))


@pytest.mark.slow
def test_tiny_run_writes_metrics(tmp_path):
  c = tiny.get_config()
  metrics = experiment.run(c, str(tmp_path))
  with open(tmp_path / 'metrics.json') as f:
    on_disk = json.load(f)
  assert on_disk['title'] == metrics['title']
  assert on_disk['config_name'] == 'tiny'
  for key in ('cpgba_GSL_asr', 'cpgba_GPL_ca', 'asr_eval_subgraphs_per_s'):
    assert key in on_disk['summary']
  assert 0.0 <= on_disk['summary']['cpgba_GSL_asr'] <= 1.0
  for fig in on_disk['figures']:
    assert os.path.exists(tmp_path / fig['path'])
  # Partial results are reused: a second run trains nothing new.
  again = experiment.run(c, str(tmp_path))
  assert again['tables'] == metrics['tables']


def test_collect_summarises_partials_and_names_missing(tmp_path):
  c = tiny.get_config()
  part = tmp_path / 'partial'
  part.mkdir()
  rows = [
    {
      'attack': 'cpgba',
      'defence': d,
      'paradigm': p,
      'asr': asr,
      'ca': 0.5,
      'flagged_poison_frac': None,
    }
    for d, p, asr in (
      ('none', 'gcn', 0.8),
      ('none', 'grace', 0.4),
      ('none', 'gprompt', 0.6),
      ('prune', 'gcn', 0.2),
    )
  ]
  (part / 'seed0_cpgba.json').write_text(
    json.dumps(
      {
        'rows': rows,
        'attack_seconds': 2.0,
        'eval_seconds': 0.5,
        'eval_subgraphs': 100,
      }
    )
  )
  (part / 'seed0_clean.json').write_text(
    json.dumps([{'paradigm': p, 'ca': 0.9} for p in c.paradigms])
  )
  m = experiment.collect(c, str(tmp_path))
  assert m['summary']['cpgba_GSL_asr'] == 0.8
  assert m['summary']['cpgba_GCL_asr'] == 0.4
  assert m['summary']['asr_eval_subgraphs_per_s'] == 200.0
  assert 'sba_samp_GSL_asr' not in m['summary']
  assert any('seed 0/sba_samp' in n for n in m['notes'])
  paper_rows = m['tables'][-1]['rows']
  assert [
    'cpgba',
    'GSL',
    '0.800 ± 0.000',
    '0.500 ± 0.000',
    '0.97',
    '0.81',
  ] in paper_rows
  prune = m['tables'][1]
  assert prune['rows'][0][2] == '0.200 ± 0.000 / 0.500 ± 0.000'
  assert os.path.exists(tmp_path / 'metrics.json')
