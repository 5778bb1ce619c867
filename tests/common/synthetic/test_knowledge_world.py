"""Tests for the knowledge world: determinism, consistency, splits."""

import collections
import dataclasses
import re

import pytest

from common import synthetic
from common.synthetic import knowledge_world as kw
from common.synthetic import questions as questions_lib
from common.synthetic import relations as rel

TINY = kw.KnowledgeWorldConfig.tiny()


@pytest.fixture(scope='module')
def world():
  return kw.build_knowledge_world(TINY)


@pytest.fixture(scope='module')
def big_world():
  return kw.build_knowledge_world(
    kw.KnowledgeWorldConfig(
      num_entities=300, train_questions=1500, test_questions=300,
      compositional_questions=300, num_distractors=300,
    )
  )  # fmt: skip


def _mentions(text, entity):
  names = (entity.name,) + entity.aliases
  return any(re.search(rf'(?<!\w){re.escape(n)}(?!\w)', text) for n in names)


def test_same_seed_same_world_different_seed_differs(world):
  again = kw.build_knowledge_world(TINY)
  assert again.entities == world.entities
  assert again.facts == world.facts
  assert again.documents == world.documents
  assert again.questions == world.questions
  other = kw.build_knowledge_world(dataclasses.replace(TINY, seed=1))
  assert other.documents != world.documents
  assert [q['question'] for q in other.questions] != [
    q['question'] for q in world.questions
  ]


def test_entity_counts_names_unique(big_world):
  counts = collections.Counter(e.type for e in big_world.entities)
  assert sum(counts.values()) == 300
  assert set(counts) == set(rel.ENTITY_TYPES)
  all_names = [e.name for e in big_world.entities]
  all_names += [e.name for e in big_world.distractor_entities]
  assert len(set(all_names)) == len(all_names)
  # Every real name is two or three words from the closed name-part sets.
  for e in big_world.entities:
    assert 1 <= len(e.name.split()) <= 3, e


def test_facts_are_functional_and_typed(big_world):
  keys = [(f.subject, f.relation) for f in big_world.facts]
  assert len(keys) == len(set(keys))
  ents = big_world.entity_by_id
  for f in big_world.facts:
    spec = rel.RELATIONS[f.relation]
    assert ents[f.subject].type == spec.subject_type
    if spec.entity_valued:
      assert ents[f.object].type == spec.object_type
    else:
      assert f.object not in ents
  # Capitals lie in their country; lead singers are band members.
  for f in big_world.facts:
    if f.relation == 'capital':
      assert big_world.fact_index[(f.object, 'located_in')].object == f.subject
    if f.relation == 'lead_singer':
      assert big_world.fact_index[(f.object, 'member_of')].object == f.subject


def test_every_fact_document_states_the_fact(big_world):
  docs = big_world.document_by_id
  ents = big_world.entity_by_id
  assert len({f.doc_id for f in big_world.facts}) == len(big_world.facts)
  for f in big_world.facts:
    contents = docs[f.doc_id]['contents']
    title, _, sentence = contents.partition('\n')
    assert title == f'"{ents[f.subject].name}"'
    assert _mentions(sentence, ents[f.subject])
    if f.object in ents:
      assert _mentions(sentence, ents[f.object])
    else:
      assert re.search(rf'(?<!\w){f.object}(?!\w)', sentence)


def test_distractor_documents(big_world):
  assert len(big_world.documents) == len(big_world.facts) + 300
  assert len(big_world.distractor_facts) == 300
  true = {(f.subject, f.relation): f.object for f in big_world.facts}
  kinds = collections.Counter()
  for f in big_world.distractor_facts:
    if f.subject.startswith('ghost_'):
      kinds['ghost'] += 1
      ghost = big_world.entity_by_id[f.subject]
      assert ghost.distractor
      # A look-alike shares a name part with some real entity of its type.
      parts = {
        p for e in big_world.entities if e.type == ghost.type
        for p in e.name.split()
      }  # fmt: skip
      assert set(ghost.name.split()) & parts
    else:
      kinds['unasked'] += 1
      assert f.relation not in rel.RELATIONS
      assert (f.subject, f.relation) not in true
  assert kinds['ghost'] > 50 and kinds['unasked'] > 50


def test_decompositions_chain_through_the_facts(big_world):
  ents = big_world.entity_by_id
  for q in big_world.questions:
    dec, chain, path = q['decomposition'], q['entities'], q['relations']
    assert q['hops'] == len(dec) == len(path) == len(chain) - 1
    for i, step in enumerate(dec):
      fact = big_world.fact_index[(chain[i], path[i])]
      assert fact.object == chain[i + 1]
      assert step['doc_id'] == fact.doc_id
      assert step['subject'] == ents[chain[i]].name
      assert step['answer'] == big_world.object_name(fact)
      assert step['subject'] in step['query']
      if i > 0:  # each hop starts from the previous hop's answer
        assert step['subject'] == dec[i - 1]['answer']
    assert q['golden_answers'][0] == dec[-1]['answer']
    last = ents.get(chain[-1])
    if last is not None:
      assert q['golden_answers'] == [last.name, *last.aliases]
    assert len(set(chain)) == len(chain)


def test_question_text_names_the_start_entity(big_world):
  ents = big_world.entity_by_id
  for q in big_world.questions:
    assert _mentions(q['question'], ents[q['entities'][0]])
    assert q['question'].endswith('?')


def test_hops_and_split_sizes(big_world):
  by = collections.Counter((q['split'], q['hops']) for q in big_world.questions)
  assert {h for (s, h) in by if s == 'train'} == {1, 2, 3}
  assert {h for (s, h) in by if s == 'test'} == {1, 2, 3}
  assert {h for (s, h) in by if s == 'compositional'} <= {2, 3}
  assert sum(v for (s, _), v in by.items() if s == 'train') == 1500
  assert sum(v for (s, _), v in by.items() if s == 'test') == 300
  # Spread over hop counts (only 470 two-hop train chains exist here).
  assert min(by[('train', h)] for h in (1, 2, 3)) >= 450
  ids = [q['id'] for q in big_world.questions]
  assert len(set(ids)) == len(ids)


def test_heldout_entities_never_in_train(big_world):
  heldout = big_world.heldout_entities
  assert len(heldout) > 0
  assert {e.type for e in heldout} == set(kw.HELDOUT_TYPES)
  heldout_ids = {e.id for e in heldout}
  for q in big_world.split('train') + big_world.split('compositional'):
    assert not heldout_ids & set(q['entities'])
    texts = [q['question'], *q['golden_answers']]
    texts += [s['query'] + ' ' + s['answer'] for s in q['decomposition']]
    for e in heldout:
      assert not any(_mentions(t, e) for t in texts), (e, q)
  for q in big_world.split('test'):
    assert heldout_ids & set(q['entities'])


def test_compositional_paths_unseen_in_train(big_world):
  comp = set(big_world.compositional_paths)
  assert len(comp) == big_world.config.num_compositional_paths
  train_paths = {tuple(q['relations']) for q in big_world.split('train')}
  test_paths = {tuple(q['relations']) for q in big_world.split('test')}
  assert not comp & train_paths and not comp & test_paths
  comp_qs = big_world.split('compositional')
  assert {tuple(q['relations']) for q in comp_qs} == comp
  train_relations = {r for p in train_paths for r in p}
  for path in comp:
    assert len(path) >= 2
    assert set(path) <= train_relations  # each relation seen alone


def test_budget_spreads_evenly_and_refills():
  assert questions_lib._budget(9, {1: 10, 2: 10, 3: 10}) == {1: 3, 2: 3, 3: 3}
  assert questions_lib._budget(10, {1: 10, 2: 10, 3: 10}) == {1: 4, 2: 3, 3: 3}
  # Hop 2 has only 1 chain: its unused share goes to the others.
  assert questions_lib._budget(9, {1: 10, 2: 1, 3: 10}) == {1: 4, 2: 1, 3: 4}
  assert questions_lib._budget(50, {1: 5, 2: 1}) == {1: 5, 2: 1}
  assert questions_lib._budget(3, {1: 0, 2: 5}) == {1: 0, 2: 3}


def test_relation_paths():
  one = rel.relation_paths(1)
  assert one == [(r,) for r in sorted(rel.RELATIONS)]
  three = rel.relation_paths(3)
  assert ('founded_by', 'born_in', 'located_in') in three
  assert ('capital', 'located_in') not in three  # returns to the start
  assert all(rel.RELATIONS[p[-2]].entity_valued for p in three if len(p) > 1)
  with pytest.raises(ValueError, match='max_hops'):
    rel.relation_paths(0)


def test_relation_keywords_are_exclusive():
  assert set(rel.KEYWORDS) == set(rel.RELATIONS)
  has = lambda t, w: re.search(rf'(?i)(?<!\w){w}(?!\w)', t) is not None
  for name, r in rel.RELATIONS.items():
    key = rel.KEYWORDS[name]
    for t in r.doc + r.query:
      assert has(t, key), (name, t)
    for other, r2 in rel.RELATIONS.items():
      if other != name:
        assert not any(has(t, key) for t in r2.doc), (key, other)
    for d in rel.DISTRACTOR_RELATIONS:
      assert not any(has(t, key) for t in d.doc), (key, d.name)


def test_follow_chain(world):
  f = next(f for f in world.facts if f.relation == 'born_in')
  city = f.object
  country = world.fact_index[(city, 'located_in')].object
  chain = questions_lib.follow_chain(
    world, f.subject, ('born_in', 'located_in')
  )
  assert chain == [f.subject, city, country]
  assert questions_lib.follow_chain(world, f.subject, ('capital',)) is None


def test_all_texts_tokenize_without_unk(world):
  tok = synthetic.build_tokenizer(world, strict=True)
  index = synthetic.LexicalIndex(world.documents)
  for q in world.questions:
    texts = [
      synthetic.search_prompt(q['question']),
      synthetic.golden_search_trace(q, world.document_by_id),
      synthetic.golden_search_trace(
        q, world.document_by_id, retrieve=lambda s: index.search(s, 3)
      ),
    ]
    for t in texts:
      tok.encode(t)  # strict: raises on any unknown word
  for d in world.documents:
    tok.encode(d['contents'])


def test_heldout_names_tokenize_with_train_vocabulary(big_world):
  # Names are compositional: a vocabulary from train questions and the
  # corpus alone already covers every held-out entity name.
  train_texts = [q['question'] for q in big_world.split('train')]
  train_texts += [d['contents'] for d in big_world.documents]
  tok = synthetic.build_tokenizer(extra_texts=train_texts, strict=True)
  for e in big_world.heldout_entities:
    tok.encode(e.name)


def test_config_validation():
  with pytest.raises(ValueError, match='num_entities'):
    kw.KnowledgeWorldConfig(num_entities=10)
  with pytest.raises(ValueError, match=r'num_entities=2501.*30\.\.2500'):
    kw.KnowledgeWorldConfig(num_entities=2501)
  with pytest.raises(ValueError, match='max_hops'):
    kw.KnowledgeWorldConfig(max_hops=0)
  with pytest.raises(ValueError, match='heldout_fraction'):
    kw.KnowledgeWorldConfig(heldout_fraction=0.7)
  with pytest.raises(ValueError, match='num_compositional_paths'):
    kw.KnowledgeWorldConfig(max_hops=1, num_compositional_paths=2)
  with pytest.raises(ValueError, match='alias_prob'):
    kw.KnowledgeWorldConfig(alias_prob=1.5)
  with pytest.raises(TypeError, match='seed must be int'):
    kw.KnowledgeWorldConfig(seed=1.5)
  with pytest.raises(TypeError, match='KnowledgeWorldConfig'):
    kw.build_knowledge_world({'seed': 0})
  with pytest.raises(ValueError, match='unknown split'):
    kw.build_knowledge_world(TINY).split('dev')


def test_knobs_change_difficulty():
  one = kw.build_knowledge_world(
    dataclasses.replace(TINY, num_templates=1, alias_prob=0.0)
  )
  many = kw.build_knowledge_world(dataclasses.replace(TINY, num_templates=5))

  def shapes(w):  # templates = sentence with the names blanked out
    out = set()
    for d in w.documents:
      s = d['contents'].split('\n')[1]
      for e in w.entities + w.distractor_entities:
        s = s.replace(e.name, '#')
      out.add(re.sub(r'\d+', '#', s))
    return out

  assert len(shapes(one)) < len(shapes(many))
  short = kw.build_knowledge_world(
    dataclasses.replace(TINY, max_hops=1, num_compositional_paths=0)
  )
  assert {q['hops'] for q in short.questions} == {1}
  assert short.split('compositional') == []
  nodis = kw.build_knowledge_world(dataclasses.replace(TINY, num_distractors=0))
  assert len(nodis.documents) == len(nodis.facts)
