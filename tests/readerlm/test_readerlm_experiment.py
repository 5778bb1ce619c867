"""The experiment: configs, bad input, and a tiny end-to-end run."""

import json

import pytest

from common import schema
from experiments.readerlm.configs import default
from experiments.readerlm.configs import paper
from experiments.readerlm.configs import tiny
from readerlm import backends
from readerlm import experiment
from readerlm import realpages


def test_paper_config_is_constructed_and_valid():
  c = paper.get_config()
  experiment.validate_config(c)
  assert c.model.preset == 'qwen2.5-1.5b'
  assert c.model.hf_dir == 'Qwen2.5-1.5B-Instruct'
  assert c.model.rope_theta == 5e6 == c.paper.rope_theta
  assert tuple(c.paper.context_schedule) == (32_768, 125_000, 256_000)
  assert c.paper.stage_order[-2:] == ('dpo', 'self_play')
  from common import models

  cfg = models.build_config(
    c.model,
    vocab_size=c.vocab_size,
    max_seq_len=c.paper.max_position_embeddings,
  )
  assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_kv_heads) == (
    28,
    1536,
    12,
    2,
  )
  assert cfg.rope_theta == 5e6 and cfg.qkv_bias


def test_default_has_three_seeds():
  c = default.get_config()
  experiment.validate_config(c)
  assert len(c.seeds) >= 3


def test_prompt_cut_fractions_count_prompts_over_the_budget():
  class WordTok:  # one token per whitespace-separated word
    def encode(self, text):
      return text.split()

  records = [
    {'task': 'markdown', 'prompt': 'a b'},
    {'task': 'markdown', 'prompt': 'a ' * 50},
    {'task': 'json', 'prompt': 'x'},
  ]
  # the ChatML wrapper adds no whitespace-separated words beyond the turn
  # markers, so 'a b' stays under 20 and 50 words go over it
  assert experiment.prompt_cut_fractions(WordTok(), records, 20) == {
    'markdown': 0.5,
    'json': 0.0,
  }
  assert experiment.prompt_cut_fractions(WordTok(), records[:1], 20) == {
    'markdown': 0.0,
    'json': 0.0,
  }


@pytest.mark.parametrize(
  'field,value,match',
  [
    ('drafter', 'pandoc', 'drafter'),
    ('merge_weights', (0.7, 0.7), 'merge_weights'),
    ('sft.steps', 0, 'sft.steps'),
    ('pages.sections', ('paragraph', 'video'), 'pages'),
    ('dpo.loss_type', 'sigmoid_normed', 'dpo.loss_type'),
    ('self_play.sft_steps', -1, 'self_play.sft_steps'),
    ('context_parallel', -2, 'context_parallel'),
  ],
)
def test_bad_config_is_refused_before_work(field, value, match):
  c = tiny.get_config()
  node = c
  *parents, leaf = field.split('.')
  for p in parents:
    node = node[p]
  node[leaf] = value
  with pytest.raises(schema.ConfigError, match=match):
    experiment.validate_config(c)


def test_missing_nodejs_dir_is_skipped_with_a_message(tmp_path):
  c = tiny.get_config()
  c.real.nodejs_dir = str(tmp_path / 'absent')
  real, note = experiment.evaluate_real(c)
  assert real is None and 'skipped' in note and 'absent' in note


def test_nodejs_loader_on_small_files(tmp_path):
  (tmp_path / 'fs.html').write_text(
    '<html><body><div id="column2">nav</div><div id="apicontent"><h1>fs</h1>'
    '<p>File system.</p></div></body></html>'
  )
  (tmp_path / 'fs.md').write_text(
    '# fs\n\n<!-- YAML\nadded: v0\n-->\n\n\n\nFile system.\n'
  )
  (tmp_path / 'only.html').write_text('<p>no md</p>')
  pages = realpages.load_nodejs(tmp_path)
  assert [p['id'] for p in pages] == ['fs']
  assert pages[0]['markdown'] == '# fs\n\nFile system.\n'
  c = tiny.get_config()
  c.real.nodejs_dir = str(tmp_path)
  real, note = experiment.evaluate_real(c)
  assert '1 Node.js pages' in note
  # The main-content selection drops the sidebar: never worse than the page.
  r = real['html_to_markdown']
  assert r['apicontent']['rouge_l'] >= r['whole']['rouge_l']
  assert r['apicontent']['rouge_l'] == pytest.approx(1.0)


def test_ring_size_beyond_the_devices_is_refused():
  c = tiny.get_config()
  c.context_parallel = 64
  with pytest.raises(ValueError, match='context_parallel=64.*8 devices'):
    experiment._ring_mesh(c)
  c.context_parallel = 0
  assert experiment._ring_mesh(c).shape['cp'] == 8  # all devices


def test_replay_drafter_hands_each_prompt_its_draft():
  r = experiment._Replay({'p1': 'd1'})
  assert r.generate([{'role': 'user', 'content': 'p1'}]) == 'd1'
  with pytest.raises(backends.BackendError, match='no pre-generated draft'):
    r.generate([{'role': 'user', 'content': 'p2'}])


@pytest.mark.slow  # ~30-80 s on 2 cores: make test-all runs it
def test_tiny_end_to_end(tmp_path):
  c = tiny.get_config()
  c.real.nodejs_dir = str(tmp_path / 'none')
  m = experiment.run(c, str(tmp_path / 'run'))
  s = m['summary']
  # The rule refiner removes the clutter the drafter keeps.
  assert s['refined_rouge_l'] > s['drafter_rouge_l'] + 0.2
  names = [t['title'] for t in m['tables']]
  assert any('by stage' in n for n in names)
  stage = next(t for t in m['tables'] if 'by stage' in t['title'])
  assert [r[0] for r in stage['rows']][-1].startswith('+ self-play')
  i = stage['columns'].index('copy acc (TF)')
  assert all(0.0 <= float(r[i].split(' ')[0]) <= 1.0 for r in stage['rows'])
  assert s['ring_degree'] == 8
  sp = tmp_path / 'run' / 'seed_0' / 'self_play'
  assert (sp / 'records.jsonl').exists() and (sp / 'dpo.jsonl').exists()
  assert (tmp_path / 'run' / 'tokenizer' / 'tokenizer.json').exists()
  for name in ('sft_filtered', 'sft_critique', 'dpo'):
    assert (tmp_path / 'run' / 'synthesis' / f'{name}.jsonl').exists()
  again = experiment.run(c, str(tmp_path / 'run'))  # resumes from cache
  assert json.dumps(again['summary']['dpo_rouge_l']) == json.dumps(
    s['dpo_rouge_l']
  )
