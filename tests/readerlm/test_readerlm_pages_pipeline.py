"""Synthetic pages, rule backends, the pipeline, its datasets and bad input."""

import http.server
import json
import threading

import hypothesis
import pytest
from hypothesis import strategies as st

from common import synthetic
from readerlm import backends
from readerlm import converters
from readerlm import metrics
from readerlm import pages
from readerlm import pipeline
from readerlm import refine
from readerlm import roles


@pytest.fixture(scope='module')
def split():
  world = synthetic.build_knowledge_world(
    synthetic.KnowledgeWorldConfig.tiny(0)
  )
  return pages.build_pages(world, pages.PageConfig(max_pages=24), seed=0)


def test_pages_are_deterministic_and_split_by_entity(split):
  world = synthetic.build_knowledge_world(
    synthetic.KnowledgeWorldConfig.tiny(0)
  )
  again = pages.build_pages(world, pages.PageConfig(max_pages=24), seed=0)
  assert again == split
  train_ids = {p['id'] for p in split['train']}
  assert train_ids.isdisjoint({p['id'] for p in split['test']})
  page = split['train'][0]
  assert page['markdown'].startswith(f'# {page["entity"]}\n')
  assert page['json']['name'] == page['entity']


def test_gold_passes_the_critic_and_clutter_does_not(split):
  for page in split['train']:
    ok, why = refine.critique_markdown(page['html'], page['markdown'])
    assert ok, why
  page = next(p for p in split['train'] if 'cookie' in p['html'])
  full = converters.convert('html2text', page['html'])
  ok, why = refine.critique_markdown(page['html'], full)
  assert not ok and 'boilerplate' in why


def test_refine_beats_every_raw_drafter(split):
  for name in converters.DRAFTERS:
    raw, refined = [], []
    for p in split['test']:
      d = converters.convert(name, p['html'])
      raw.append(metrics.rouge_l(d, p['markdown'])['f1'])
      refined.append(
        metrics.rouge_l(refine.refine_markdown(p['html'], d), p['markdown'])[
          'f1'
        ]
      )
    if name != 'trafilatura':  # trafilatura already drops most clutter
      assert sum(refined) > sum(raw), name


def test_invalid_nested_list_flattened_by_markdownify():
  html = '<ul><li>A</li><ul><li>B</li></ul></ul>'
  out = converters.convert('markdownify', html)
  assert 'B' in out  # the peer keeps the text (nesting lost: issue #236)


def test_refine_normalises_headings_and_bullets():
  html = '<main><h1>T</h1><ul><li>a<ul><li>b</li></ul></li></ul></main>'
  draft = 'T\n=\n\n* a\n    * b\n\nCookie banner text here'
  assert refine.refine_markdown(html, draft) == '# T\n\n- a\n  - b\n'


def test_roles_parse_round_trips():
  p = roles.refine_prompt('<p>x</p>', 'draft text', pages.SCHEMA)
  parts = roles.parse(p)
  assert parts['html'] == '<p>x</p>' and parts['draft'] == 'draft text'
  assert parts['schema'] == pages.SCHEMA


class _Broken:
  def generate(self, messages, **decode):
    raise backends.BackendError('server down')


def test_pipeline_datasets_resume_and_failures(split, tmp_path):
  path = tmp_path / 'records.jsonl'
  args = (
    backends.RuleDrafter('html2text'),
    backends.RuleRefiner(),
    backends.RuleCritic(),
  )
  recs = pipeline.synthesize(split['train'][:6], *args, path)
  assert len(recs) == 6
  # Torn last line (a crash mid-write) and a rerun: resumes, nothing lost.
  with path.open('a') as f:
    f.write('{"id": "torn"')
  recs = pipeline.synthesize(split['train'][:10], *args, path)
  assert [r['id'] for r in recs] == [p['id'] for p in split['train'][:10]]
  # A failing backend is recorded per page, the run goes on.
  recs = pipeline.synthesize(split['train'][10:12], _Broken(), *args[1:], path)
  errors = [r for r in recs if 'error' in r]
  assert len(errors) == 2 and 'server down' in errors[0]['error']
  data = pipeline.datasets(recs, seed=0)
  assert data['sft_filtered'] and data['dpo']
  pos = sum(v['passed'] for v in data['sft_critique'])
  neg = len(data['sft_critique']) - pos
  assert neg >= 1 and pos == 2 * neg
  for t in data['dpo']:
    assert t['chosen'] != t['rejected']
  assert data == pipeline.datasets(recs, seed=0)
  written = pipeline.write_datasets(data, tmp_path / 'out')
  assert sorted(written) == ['dpo', 'sft_critique', 'sft_filtered']


def test_json_task_needs_a_valid_schema(split, tmp_path):
  args = (backends.RuleDrafter(), backends.RuleRefiner(), backends.RuleCritic())
  with pytest.raises(ValueError, match='schema'):
    pipeline.synthesize(split['train'][:1], *args, tmp_path / 'r', task='json')
  from readerlm import json_eval

  with pytest.raises(json_eval.SchemaError):
    pipeline.synthesize(
      split['train'][:1],
      *args,
      tmp_path / 'r',
      task='json',
      schema={'type': 'nope'},
    )
  recs = pipeline.synthesize(
    split['train'][:4], *args, tmp_path / 'r', task='json', schema=pages.SCHEMA
  )
  assert sum(r['passed'] for r in recs) >= 3


MALFORMED = [
  '',
  '<html><body><p>unclosed <b>bold <div>nested',
  '\x00\x01\x02garbage\xff\xfe',
  '<<<>>><//p>',
  '<p>' + 'word ' * 5 + '</p>' * 50,
  '<table><tr><td>cell<tr><td>x</table>',
]


@pytest.mark.parametrize('html', MALFORMED)
def test_malformed_html_never_crashes(html, tmp_path):
  rec = pipeline.run_page(
    {'id': 'p', 'html': html}, backends.RuleDrafter(), backends.RuleRefiner(),
    backends.RuleCritic(), 'markdown', None,
  )  # fmt: skip
  assert 'error' in rec or isinstance(rec['refined'], str)


def test_binary_garbage_and_a_big_page():
  from readerlm import prompt

  text = prompt.decode_html(bytes(range(256)) * 8)
  assert isinstance(text, str)
  big = '<html><body>' + '<p>lorem ipsum dolor</p>' * 420_000 + '</body></html>'
  assert len(big) > 10_000_000
  out = converters.convert('html_to_markdown', big)
  assert out.count('lorem') == 420_000


_TAGS = st.sampled_from(
  [
    'p',
    'div',
    'ul',
    'li',
    'table',
    'tr',
    'td',
    'pre',
    'code',
    'a',
    'h1',
    'script',
    'nav',
  ]
)


@st.composite
def _fragments(draw):
  parts = []
  for _ in range(draw(st.integers(0, 12))):
    kind = draw(st.integers(0, 3))
    tag = draw(_TAGS)
    if kind == 0:
      parts.append(f'<{tag}>')
    elif kind == 1:
      parts.append(f'</{tag}>')
    else:
      parts.append(draw(st.text(max_size=20)))
  return ''.join(parts)


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(_fragments())
def test_fuzz_random_fragments(html):
  rec = pipeline.run_page(
    {'id': 'f', 'html': html}, backends.RuleDrafter('markdownify'),
    backends.RuleRefiner(), backends.RuleCritic(), 'markdown', None,
  )  # fmt: skip
  assert 'error' not in rec, rec.get('error')
  assert isinstance(rec['passed'], bool)


class _FakeOpenAI(http.server.BaseHTTPRequestHandler):
  def do_POST(self):  # noqa: N802
    body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
    text = body['messages'][-1]['content']
    if 'FAIL-500' in text:
      self.send_response(500)
      self.end_headers()
      return
    if 'SLOW' in text:
      threading.Event().wait(2.0)
    reply = {
      'choices': [
        {
          'message': {
            'content': f'# echo {body["model"]} {body["temperature"]}'
          }
        }
      ]
    }
    if 'BAD-SHAPE' in text:
      reply = {'nothing': True}
    data = json.dumps(reply).encode()
    self.send_response(200)
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(data)))
    self.end_headers()
    try:
      self.wfile.write(data)
    except BrokenPipeError:  # the client timed out first
      pass

  def log_message(self, *args):
    del args


@pytest.fixture
def server():
  srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _FakeOpenAI)
  thread = threading.Thread(target=srv.serve_forever, daemon=True)
  thread.start()
  yield f'http://127.0.0.1:{srv.server_address[1]}/v1'
  srv.shutdown()
  srv.server_close()
  thread.join()


def test_openai_backend_against_a_loopback_server(server, tmp_path):
  b = backends.OpenAIBackend(server, 'readerlm-v2', timeout=0.5)
  assert (
    b.generate([{'role': 'user', 'content': 'hi'}]) == '# echo readerlm-v2 0.0'
  )
  with pytest.raises(backends.BackendError, match='HTTP 500'):
    b.generate([{'role': 'user', 'content': 'FAIL-500'}])
  with pytest.raises(backends.BackendError, match='timed out|Timeout'):
    b.generate([{'role': 'user', 'content': 'SLOW'}])
  with pytest.raises(backends.BackendError, match='choices'):
    b.generate([{'role': 'user', 'content': 'BAD-SHAPE'}])
  # As the drafter of the pipeline: one failing page is recorded, not fatal.
  pages_ = [
    {'id': 'a', 'html': '<p>ok</p>'},
    {'id': 'b', 'html': '<p>FAIL-500</p>'},
  ]
  recs = pipeline.synthesize(
    pages_,
    b,
    backends.RuleRefiner(),
    backends.RuleCritic(),
    tmp_path / 'r.jsonl',
  )
  assert 'error' not in recs[0] and 'HTTP 500' in recs[1]['error']


def test_unreachable_server_is_a_backend_error():
  b = backends.OpenAIBackend('http://127.0.0.1:9/v1', 'm', timeout=0.5)
  with pytest.raises(backends.BackendError):
    b.generate([{'role': 'user', 'content': 'x'}])


def test_pages_as_bytes_are_decoded_not_fatal(tmp_path):
  page = {
    'id': 'b',
    'html': '<main><h1>Caf\xe9</h1><p>ok text</p></main>'.encode('cp1252'),
  }
  rec = pipeline.run_page(
    page, backends.RuleDrafter(), backends.RuleRefiner(), backends.RuleCritic(),
    'markdown', None,
  )  # fmt: skip
  assert 'error' not in rec and 'Café' in rec['refined']
