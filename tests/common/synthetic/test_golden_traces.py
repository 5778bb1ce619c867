"""Tests for search traces, JSONL formats and the lexical retriever."""

import json
import math

import pytest

from common import synthetic
from common.synthetic import knowledge_world as kw
from common.synthetic import traces


@pytest.fixture(scope='module')
def world():
  return kw.build_knowledge_world(kw.KnowledgeWorldConfig.tiny())


DOCS = {
  '7': {
    'id': '7',
    'contents': '"Vel Corp"\nVel Corp was founded by Kalo Varen.',
  },
  '9': {'id': '9', 'contents': '"Kalo Varen"\nKalo Varen was born in Dorvik.'},
  '3': {'id': '3', 'contents': '"Kalo Mira"\nKalo Mira was born in Sarn.'},
}
QUESTION = {
  'id': 'q',
  'question': 'Where was the founder of Vel Corp born?',
  'golden_answers': ['Dorvik'],
  'relations': ['founded_by', 'born_in'],
  'decomposition': [
    {'query': 'founder of Vel Corp', 'answer': 'Kalo Varen', 'doc_id': '7',
     'subject': 'Vel Corp'},
    {'query': 'Kalo Varen born in', 'answer': 'Dorvik', 'doc_id': '9',
     'subject': 'Kalo Varen'},
  ],
}  # fmt: skip


def test_golden_trace_exact_text():
  assert traces.golden_search_trace(QUESTION, DOCS) == (
    '<think> I need the founder of Vel Corp. </think> '
    '<search> founder of Vel Corp </search> '
    '<information>Doc 1(Title: "Vel Corp") Vel Corp was founded by Kalo '
    'Varen.</information> '
    '<think> The founder of Vel Corp is Kalo Varen. Now I need the '
    'city where Kalo Varen was born. </think> '
    '<search> Kalo Varen born in </search> '
    '<information>Doc 1(Title: "Kalo Varen") Kalo Varen was born in '
    'Dorvik.</information> '
    '<think> The city where Kalo Varen was born is Dorvik. </think> '
    '<answer> Dorvik </answer>'
  )
  assert traces.golden_search_trace(QUESTION, DOCS, think=False) == (
    '<search> founder of Vel Corp </search> '
    '<information>Doc 1(Title: "Vel Corp") Vel Corp was founded by Kalo '
    'Varen.</information> '
    '<search> Kalo Varen born in </search> '
    '<information>Doc 1(Title: "Kalo Varen") Kalo Varen was born in '
    'Dorvik.</information> <answer> Dorvik </answer>'
  )


def test_golden_trace_with_retriever_keeps_golden_doc():
  wrong = lambda q: [DOCS['3'], DOCS['7']]  # never returns doc 9
  trace = traces.golden_search_trace(QUESTION, DOCS, retrieve=wrong)
  info = traces.extract_tag(trace, 'information')
  assert info[0].startswith('Doc 1(Title: "Kalo Mira")')
  assert 'Doc 2(Title: "Vel Corp")' in info[0]
  # Hop 2: doc 9 replaces the last retrieved document.
  assert 'Doc 2(Title: "Kalo Varen") Kalo Varen was born in Dorvik.' in info[1]
  raw = traces.golden_search_trace(
    QUESTION, DOCS, retrieve=wrong, ensure_golden=False
  )
  assert 'Dorvik.' not in traces.extract_tag(raw, 'information')[1]
  with pytest.raises(ValueError, match='documents'):
    traces.golden_search_trace(QUESTION)
  with pytest.raises(ValueError, match='ensure_golden needs documents'):
    traces.golden_search_trace(QUESTION, retrieve=wrong)


def test_golden_trace_without_relations_uses_queries():
  q = {k: v for k, v in QUESTION.items() if k != 'relations'}
  trace = traces.golden_search_trace(q, DOCS)
  assert traces.extract_tag(trace, 'think') == [
    'I will search for founder of Vel Corp.',
    'I will search for Kalo Varen born in.',
  ]
  with pytest.raises(ValueError, match='no decomposition'):
    traces.golden_search_trace({'id': 'x', 'decomposition': []}, DOCS)


def test_world_traces_match_decompositions(world):
  for q in world.questions:
    trace = traces.golden_search_trace(q, world.document_by_id)
    searches = traces.extract_tag(trace, 'search')
    assert searches == [s['query'] for s in q['decomposition']]
    infos = traces.extract_tag(trace, 'information')
    for step, info in zip(q['decomposition'], infos, strict=True):
      golden = world.document_by_id[step['doc_id']]['contents']
      assert golden.partition('\n')[2] in info
    assert traces.extract_answer(trace) == q['golden_answers'][0]


def test_prompt_and_answer_extraction():
  p = traces.search_prompt('Who founded Vel Corp')
  assert p.startswith('Answer the given question.')
  assert p.endswith('Question: Who founded Vel Corp?\n')
  assert traces.search_prompt('Who?', instruction=False) == 'Question: Who?\n'
  assert (
    traces.extract_answer('<answer> a </answer> x <answer>b</answer>') == 'b'
  )
  assert traces.extract_answer('no answer') is None
  assert traces.format_documents([DOCS['7'], DOCS['9']]) == (
    'Doc 1(Title: "Vel Corp") Vel Corp was founded by Kalo Varen.\n'
    'Doc 2(Title: "Kalo Varen") Kalo Varen was born in Dorvik.'
  )
  with pytest.raises(ValueError, match='bare name'):
    traces.extract_tag('x', 'a|b')


def test_jsonl_round_trip(tmp_path, world):
  paths = synthetic.write_world_jsonl(world, tmp_path)
  assert set(paths) == {'corpus', 'train', 'test', 'compositional'}
  assert synthetic.read_corpus_jsonl(paths['corpus']) == list(world.documents)
  for split in kw.SPLITS:
    assert synthetic.read_questions_jsonl(paths[split]) == world.split(split)
  with open(paths['train']) as f:
    line = json.loads(f.readline())
  # FlashRAG / Search-R1 question layout.
  assert set(line) == {'id', 'question', 'golden_answers', 'metadata'}
  assert set(line['metadata']) == {
    'hops',
    'decomposition',
    'split',
    'relations',
    'entities',
  }
  with open(paths['corpus']) as f:
    assert set(json.loads(f.readline())) == {'id', 'contents'}


def test_jsonl_readers_accept_real_variants_and_reject_bad(tmp_path):
  corpus = tmp_path / 'c.jsonl'
  corpus.write_text(
    json.dumps({'id': 1, 'title': 'T', 'text': 'body'})
    + '\n\n'
    + json.dumps({'id': '2', 'contents': '"U"\nx'})
    + '\n'
  )
  assert synthetic.read_corpus_jsonl(corpus) == [
    {'id': '1', 'contents': '"T"\nbody'},
    {'id': '2', 'contents': '"U"\nx'},
  ]
  qs = tmp_path / 'q.jsonl'
  qs.write_text(
    json.dumps({'question': 'q?', 'golden_answers': 'a', 'metadata': {'k': 1}})
    + '\n'
  )
  assert synthetic.read_questions_jsonl(qs) == [
    {'id': '0', 'question': 'q?', 'golden_answers': ['a'], 'metadata': {'k': 1}}
  ]
  bad = tmp_path / 'bad.jsonl'
  bad.write_text('{"id": 1}\n')
  with pytest.raises(ValueError, match='bad.jsonl:1: corpus line needs'):
    synthetic.read_corpus_jsonl(bad)
  with pytest.raises(ValueError, match='bad.jsonl:1: question line needs'):
    synthetic.read_questions_jsonl(bad)
  bad.write_text('{"id": 1,\n')
  with pytest.raises(ValueError, match='not valid JSON'):
    synthetic.read_corpus_jsonl(bad)
  with pytest.raises(FileNotFoundError, match='no such JSONL'):
    synthetic.read_corpus_jsonl(tmp_path / 'missing.jsonl')
  with pytest.raises(ValueError, match='needs keys id and contents'):
    synthetic.write_corpus_jsonl([{'id': 1}], tmp_path / 'o.jsonl')


def test_lexical_index_hand_computed():
  docs = [DOCS['7'], DOCS['9'], DOCS['3']]
  index = synthetic.LexicalIndex(docs)
  # 'kalo' is in all 3 docs, 'varen' in 2, 'dorvik' in 1 (N = 3).
  idf = lambda df: math.log(4 / (df + 0.5))
  s = index.scores('Kalo Varen Dorvik?')
  assert s[0] == pytest.approx(idf(3) + idf(2))
  assert s[1] == pytest.approx(idf(3) + idf(2) + idf(1))
  assert s[2] == pytest.approx(idf(3))
  assert [d['id'] for d in index.search('Kalo Varen Dorvik', k=2)] == ['9', '7']
  # Ties go to the earlier document.
  assert index.search('zzz', k=1)[0]['id'] == '7'
  with pytest.raises(ValueError, match='k must be'):
    index.search('x', k=0)
  with pytest.raises(ValueError, match='at least one'):
    synthetic.LexicalIndex([])


def test_lexical_index_finds_golden_docs(world):
  index = synthetic.LexicalIndex(world.documents)
  hits = total = 0
  for q in world.questions:
    for step in q['decomposition']:
      total += 1
      hits += step['doc_id'] in {
        d['id'] for d in index.search(step['query'], 3)
      }
  # Distractors make retrieval imperfect but useful.
  assert 0.5 < hits / total < 1.0
