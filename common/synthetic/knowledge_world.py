"""A seeded multi-hop knowledge world: entities, facts, documents, questions.

`build_knowledge_world(config)` generates, from one seed:

* entities of six types (country, city, university, company, band, person)
  with compositional names (`names.py`) and answer aliases;
* one functional fact per (entity, relation) (`relations.py`), forming
  chains such as company -founded_by-> person -born_in-> city
  -located_in-> country -language-> language;
* a Search-R1/FlashRAG style corpus, `{"id", "contents"}` with contents
  `'"Title"\\n sentence'`: one document per fact (a paraphrase template
  drawn per fact, objects sometimes named by an alias) plus distractor
  documents (facts about look-alike entities that exist only in the
  corpus, and unasked relations that name a wrong candidate of the right
  type);
* 1- to `max_hops`-hop questions with golden decompositions (see
  `questions.py`), split into train, test (held-out entities) and
  compositional (held-out relation chains).

Everything is a pure function of the config; same config, same world.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import numpy as np

from common.synthetic import names
from common.synthetic import questions as questions_lib
from common.synthetic import relations as rel

SPLITS = ('train', 'test', 'compositional')
_TYPE_FRACTIONS = (
  ('country', 0.04, 3),
  ('city', 0.16, 6),
  ('university', 0.06, 2),
  ('company', 0.14, 3),
  ('band', 0.10, 2),
)
HELDOUT_TYPES = ('person', 'company', 'band', 'university')
MIN_ENTITIES = 30
MAX_ENTITIES = 2500


@dataclasses.dataclass(frozen=True)
class KnowledgeWorldConfig:
  """Size and difficulty knobs of the knowledge world.

  Attributes:
    seed: random seed; the world is a pure function of the config.
    num_entities: real entities (all types; 30 to 2500, the most the
      band-name inventory supports).
    num_templates: paraphrase templates used per relation for documents,
      questions, nested phrases and search queries (1 = a single fixed
      template each; capped by what a relation has, 3 to 5).
    num_distractors: distractor documents added to the corpus.
    max_hops: longest question chain (1 to 4).
    heldout_fraction: fraction of persons, companies, bands and
      universities held out; questions that mention one go to `test`.
    num_compositional_paths: multi-hop relation chains held out of
      training; their questions form the `compositional` split.
    alias_prob: probability that a document or question names an entity
      by an alias instead of its canonical name.
    train_questions: questions in the train split (at most; fewer when the
      world has fewer chains).
    test_questions: questions in the test split (at most).
    compositional_questions: questions in the compositional split.
  """

  seed: int = 0
  num_entities: int = 800
  num_templates: int = 4
  num_distractors: int = 800
  max_hops: int = 3
  heldout_fraction: float = 0.15
  num_compositional_paths: int = 8
  alias_prob: float = 0.3
  train_questions: int = 8000
  test_questions: int = 1000
  compositional_questions: int = 1000

  def __post_init__(self):
    def need(ok, field, allowed):
      if not ok:
        raise ValueError(
          f'KnowledgeWorldConfig.{field}={getattr(self, field)!r}; '
          f'allowed: {allowed}'
        )

    for f in dataclasses.fields(self):
      v = getattr(self, f.name)
      if f.type in ('int', int) and (
        isinstance(v, bool) or not isinstance(v, int | np.integer)
      ):
        raise TypeError(f'KnowledgeWorldConfig.{f.name} must be int, got {v!r}')
    need(
      MIN_ENTITIES <= self.num_entities <= MAX_ENTITIES,
      'num_entities',
      f'{MIN_ENTITIES}..{MAX_ENTITIES}',
    )
    need(1 <= self.num_templates, 'num_templates', '>= 1')
    need(self.num_distractors >= 0, 'num_distractors', '>= 0')
    need(1 <= self.max_hops <= 4, 'max_hops', '1..4')
    need(0.0 <= self.heldout_fraction < 0.5, 'heldout_fraction', '[0, 0.5)')
    need(
      self.num_compositional_paths >= 0
      and (self.max_hops > 1 or self.num_compositional_paths == 0),
      'num_compositional_paths',
      '>= 0, and 0 when max_hops == 1',
    )
    need(0.0 <= self.alias_prob <= 1.0, 'alias_prob', '[0, 1]')
    for f in ('train_questions', 'test_questions', 'compositional_questions'):
      need(getattr(self, f) >= 0, f, '>= 0')

  @classmethod
  def tiny(cls, seed: int = 0, **overrides) -> KnowledgeWorldConfig:
    """A world for unit tests (builds in well under a second)."""
    kw = dict(
      seed=seed,
      num_entities=60,
      num_distractors=40,
      num_compositional_paths=3,
      train_questions=120,
      test_questions=40,
      compositional_questions=30,
    )
    kw.update(overrides)
    return cls(**kw)


@dataclasses.dataclass(frozen=True)
class Entity:
  """A named entity.

  Attributes:
    id: stable id, e.g. `person_0012`.
    type: one of `relations.ENTITY_TYPES`.
    name: canonical name (answers use it first).
    aliases: other accepted names.
    heldout: never mentioned by a train question.
    distractor: exists only in distractor documents (never asked about).
  """

  id: str
  type: str
  name: str
  aliases: tuple[str, ...] = ()
  heldout: bool = False
  distractor: bool = False


@dataclasses.dataclass(frozen=True)
class Fact:
  """A (subject, relation, object) triple and the document stating it.

  `object` is an entity id for entity-valued relations and the literal
  value (e.g. `'1873'`, `'jazz'`) for attribute relations.
  """

  subject: str
  relation: str
  object: str
  doc_id: str


@dataclasses.dataclass(frozen=True)
class KnowledgeWorld:
  """A generated world (see module docstring).

  Attributes:
    config: the generating config.
    entities: real entities, by type order then index.
    facts: the true facts (one per entity and relation it has).
    documents: the corpus, `{"id", "contents"}` dicts, id = str(index).
    questions: `{"id", "question", "golden_answers", "hops",
      "decomposition": [{"query", "answer", "doc_id"}], "split",
      "relations", "entities"}` dicts.
    distractor_entities: look-alike entities of distractor documents.
    distractor_facts: facts stated only by distractor documents.
    compositional_paths: relation chains held out of training.
  """

  config: KnowledgeWorldConfig
  entities: tuple[Entity, ...]
  facts: tuple[Fact, ...]
  documents: tuple[dict, ...]
  questions: tuple[dict, ...]
  distractor_entities: tuple[Entity, ...]
  distractor_facts: tuple[Fact, ...]
  compositional_paths: tuple[tuple[str, ...], ...]

  @functools.cached_property
  def entity_by_id(self) -> dict[str, Entity]:
    return {e.id: e for e in self.entities + self.distractor_entities}

  @functools.cached_property
  def fact_index(self) -> dict[tuple[str, str], Fact]:
    """`(subject id, relation) -> Fact` for the true facts."""
    return {(f.subject, f.relation): f for f in self.facts}

  @functools.cached_property
  def document_by_id(self) -> dict[str, dict]:
    return {d['id']: d for d in self.documents}

  @property
  def heldout_entities(self) -> tuple[Entity, ...]:
    return tuple(e for e in self.entities if e.heldout)

  def object_name(self, fact: Fact) -> str:
    """Canonical name of a fact's object (the literal for attributes)."""
    if fact.object in self.entity_by_id:
      return self.entity_by_id[fact.object].name
    return fact.object

  def split(self, name: str) -> list[dict]:
    """The questions of one split."""
    if name not in SPLITS:
      raise ValueError(f'unknown split {name!r}; allowed: {SPLITS}')
    return [q for q in self.questions if q['split'] == name]

  def texts(self) -> list[str]:
    """Every text of the world (for building a tokenizer vocabulary)."""
    out = [d['contents'] for d in self.documents]
    for e in self.entities + self.distractor_entities:
      out.append(e.name)
      out.extend(e.aliases)
    for q in self.questions:
      out.append(q['question'])
      out.extend(q['golden_answers'])
      out.extend(s['query'] for s in q['decomposition'])
    out.extend(rel.template_texts())
    return out


_ARTICLE_RE = re.compile(r'\ba ([aeiou])')


def fix_articles(text: str) -> str:
  """'a engineer' -> 'an engineer' (lower-case vowel words only)."""
  return _ARTICLE_RE.sub(r'an \1', text)


def _type_counts(n: int) -> dict[str, int]:
  counts = {t: max(lo, round(frac * n)) for t, frac, lo in _TYPE_FRACTIONS}
  counts['person'] = n - sum(counts.values())
  return counts


def _make_entities(rng, counts) -> tuple[list[Entity], dict]:
  """Draws names for all real entities; returns entities and name pools."""
  taken: set[str] = set()
  ents: list[Entity] = []
  for name in names.syllable_words(rng, counts['country'], taken):
    form = names.COUNTRY_FORMS[rng.integers(len(names.COUNTRY_FORMS))]
    ents.append(
      Entity(
        f'country_{len(ents):04d}', 'country', name, (f'{form} of {name}',)
      )
    )
  n_stems = max(3, -(-2 * counts['city'] // len(names.CITY_SUFFIXES)))
  n_stems = max(n_stems, counts['university'] + 2)
  stems = names.syllable_words(rng, n_stems, taken)
  for i, (a, b) in enumerate(
    names.combine(rng, counts['city'], stems, names.CITY_SUFFIXES, set())
  ):
    ents.append(Entity(f'city_{i:04d}', 'city', f'{a} {b}'))
  for i, j in enumerate(rng.permutation(len(stems))[: counts['university']]):
    s = stems[j]
    ents.append(
      Entity(
        f'university_{i:04d}', 'university', f'{s} University',
        (f'University of {s}',),
      )
    )  # fmt: skip
  co_stems = names.syllable_words(
    rng, max(3, -(-2 * counts['company'] // len(names.COMPANY_KINDS))), taken
  )
  for i, (a, b) in enumerate(
    names.combine(rng, counts['company'], co_stems, names.COMPANY_KINDS, set())
  ):
    alias = ()
    if b in names.COMPANY_ALIASES:
      alias = (f'{a} {names.COMPANY_ALIASES[b]}',)
    ents.append(Entity(f'company_{i:04d}', 'company', f'{a} {b}', alias))
  for i, (a, b) in enumerate(
    names.combine(
      rng, counts['band'], names.BAND_ADJECTIVES, names.BAND_NOUNS, set()
    )
  ):
    ents.append(Entity(f'band_{i:04d}', 'band', f'The {a} {b}', (f'{a} {b}',)))
  k = names.pool_size(counts['person'])
  first = names.syllable_words(rng, k, taken)
  last = names.syllable_words(rng, k, taken)
  for i, (a, b) in enumerate(
    names.combine(rng, counts['person'], first, last, set())
  ):
    ents.append(Entity(f'person_{i:04d}', 'person', f'{a} {b}'))
  languages = names.syllable_words(
    rng, max(2, min(10, counts['country'] // 3)), taken
  )
  pools = dict(
    stems=stems, co_stems=co_stems, first=first, last=last,
    languages=languages,
  )  # fmt: skip
  return ents, pools


def _mark_heldout(rng, ents, fraction) -> list[Entity]:
  out = list(ents)
  for t in HELDOUT_TYPES:
    idx = [i for i, e in enumerate(out) if e.type == t]
    k = int(round(fraction * len(idx)))
    for j in rng.permutation(len(idx))[:k]:
      out[idx[j]] = dataclasses.replace(out[idx[j]], heldout=True)
  return out


def _make_facts(rng, ents, pools) -> list[tuple[str, str, str]]:
  """Draws the true (subject, relation, object) triples."""
  by_type = {t: [e.id for e in ents if e.type == t] for t in rel.ENTITY_TYPES}
  pick = lambda xs: xs[rng.integers(len(xs))]
  triples = []
  countries, cities = by_type['country'], by_type['city']
  city_country = {}
  for i, c in enumerate(cities):
    city_country[c] = countries[i] if i < len(countries) else pick(countries)
    triples.append((c, 'located_in', city_country[c]))
  for k in countries:
    triples.append(
      (k, 'capital', pick([c for c in cities if city_country[c] == k]))
    )
    triples.append((k, 'language', pick(pools['languages'])))
  for u in by_type['university']:
    triples.append((u, 'campus_in', pick(cities)))
  birth_year = {}
  for p in by_type['person']:
    birth_year[p] = int(rng.integers(1850, 2000))
    triples.append((p, 'born_in', pick(cities)))
    triples.append((p, 'studied_at', pick(by_type['university'])))
    triples.append((p, 'birth_year', str(birth_year[p])))
    triples.append((p, 'profession', pick(rel.PROFESSIONS)))
  free = [by_type['person'][i] for i in rng.permutation(len(by_type['person']))]
  for b in by_type['band']:
    members = [free.pop() for _ in range(int(rng.integers(1, 4))) if free]
    if not members:
      raise ValueError('not enough persons to give every band a member')
    triples.extend((m, 'member_of', b) for m in members)
    triples.append((b, 'lead_singer', members[0]))
    triples.append((b, 'formed_in', pick(cities)))
    triples.append((b, 'genre', pick(rel.GENRES)))
  for c in by_type['company']:
    founder = pick(by_type['person'])
    year = min(2020, birth_year[founder] + int(rng.integers(20, 60)))
    triples.append((c, 'founded_by', founder))
    triples.append((c, 'headquartered_in', pick(cities)))
    triples.append((c, 'founded_year', str(year)))
    triples.append((c, 'industry', pick(rel.INDUSTRIES)))
  return triples


def _mention(rng, ent: Entity | None, literal: str, alias_prob: float) -> str:
  if ent is None:
    return literal
  if ent.aliases and rng.random() < alias_prob:
    return ent.aliases[rng.integers(len(ent.aliases))]
  return ent.name


def _doc(title: str, sentence: str) -> str:
  return f'"{title}"\n{fix_articles(sentence)}'


def _ghost(rng, ent: Entity, pools, taken: set[str]) -> Entity | None:
  """A look-alike of `ent` (shares a name part), or None if none is free."""
  if ent.type == 'person':
    a = ent.name.split()[0]
    options = [f'{a} {b}' for b in pools['last']]
  elif ent.type == 'company':
    a = ent.name.split()[0]
    options = [f'{a} {k}' for k in names.COMPANY_KINDS]
  elif ent.type == 'band':
    a = ent.name.split()[1]
    options = [f'The {a} {n}' for n in names.BAND_NOUNS]
  elif ent.type == 'city':
    a = ent.name.split()[0]
    options = [f'{a} {s}' for s in names.CITY_SUFFIXES]
  elif ent.type == 'university':
    options = [f'{s} University' for s in pools['stems']]
  else:
    return None
  options = [o for o in options if o not in taken]
  if not options:
    return None
  name = options[rng.integers(len(options))]
  taken.add(name)
  return Entity(f'ghost_{len(taken):05d}', ent.type, name, distractor=True)


def _distractors(rng, ents, true_facts, pools, cfg):
  """Distractor (title, sentence, Fact-without-doc) triples and ghosts."""
  by_type = {t: [e for e in ents if e.type == t] for t in rel.ENTITY_TYPES}
  taken = {e.name for e in ents}
  ghosts, out = [], []
  ghostable = [f for f in true_facts if f[0].split('_')[0] != 'country']
  ent_by_id = {e.id: e for e in ents}
  k = cfg.num_templates
  for i in range(cfg.num_distractors):
    ghost = None
    if i % 2 == 0:
      s, r, o = ghostable[rng.integers(len(ghostable))]
      ghost = _ghost(rng, ent_by_id[s], pools, taken)
    if ghost is not None:
      spec = rel.RELATIONS[r]
      if spec.entity_valued:
        cands = [e for e in by_type[spec.object_type] if e.id != o]
        obj = cands[rng.integers(len(cands))]
        o_text, o_val = _mention(rng, obj, '', cfg.alias_prob), obj.id
      else:
        o_val = _random_literal(rng, spec.object_type, pools, exclude=o)
        o_text = o_val
      tmpl = spec.doc[rng.integers(min(k, len(spec.doc)))]
      ghosts.append(ghost)
      out.append(
        (ghost.name, tmpl.format(s=ghost.name, o=o_text), ghost.id, r, o_val)
      )
      continue
    d = rel.DISTRACTOR_RELATIONS[rng.integers(len(rel.DISTRACTOR_RELATIONS))]
    subj = by_type[d.subject_type][rng.integers(len(by_type[d.subject_type]))]
    if d.object_type in rel.ENTITY_TYPES:
      cands = [e for e in by_type[d.object_type] if e.id != subj.id]
      obj = cands[rng.integers(len(cands))]
      o_text, o_val = _mention(rng, obj, '', cfg.alias_prob), obj.id
    else:
      o_val = o_text = _random_literal(rng, d.object_type, pools)
    tmpl = d.doc[rng.integers(len(d.doc))]
    s_text = _mention(rng, subj, '', cfg.alias_prob)
    out.append(
      (subj.name, tmpl.format(s=s_text, o=o_text), subj.id, d.name, o_val)
    )
  return out, ghosts


def _random_literal(rng, object_type, pools, exclude=None) -> str:
  if object_type == 'year':
    while True:
      v = str(int(rng.integers(1800, 2021)))
      if v != exclude:
        return v
  choices = {
    'profession': rel.PROFESSIONS,
    'genre': rel.GENRES,
    'industry': rel.INDUSTRIES,
    'language': pools['languages'],
  }[object_type]
  choices = [c for c in choices if c != exclude]
  return choices[rng.integers(len(choices))]


def build_knowledge_world(config: KnowledgeWorldConfig) -> KnowledgeWorld:
  """Generates the world for `config` (deterministic in the config).

  Args:
    config: the knobs; see `KnowledgeWorldConfig`.

  Returns:
    The world.
  """
  if not isinstance(config, KnowledgeWorldConfig):
    raise TypeError(
      f'config must be a KnowledgeWorldConfig, got {type(config).__name__}'
    )
  rng = np.random.default_rng(config.seed)
  ents, pools = _make_entities(rng, _type_counts(config.num_entities))
  ents = _mark_heldout(rng, ents, config.heldout_fraction)
  ent_by_id = {e.id: e for e in ents}
  triples = _make_facts(rng, ents, pools)
  k = config.num_templates
  # (title, sentence, subject, relation, object, is_true_fact)
  raw = []
  for s, r, o in triples:
    spec = rel.RELATIONS[r]
    tmpl = spec.doc[rng.integers(min(k, len(spec.doc)))]
    s_text = _mention(rng, ent_by_id[s], '', config.alias_prob)
    o_text = _mention(rng, ent_by_id.get(o), o, config.alias_prob)
    raw.append(
      (ent_by_id[s].name, tmpl.format(s=s_text, o=o_text), s, r, o, True)
    )
  dis, ghosts = _distractors(rng, ents, triples, pools, config)
  raw.extend(d + (False,) for d in dis)
  order = rng.permutation(len(raw))
  documents, facts, dis_facts = [], [], []
  for doc_idx, j in enumerate(order):
    title, sentence, s, r, o, true = raw[j]
    doc_id = str(doc_idx)
    documents.append({'id': doc_id, 'contents': _doc(title, sentence)})
    (facts if true else dis_facts).append(Fact(s, r, o, doc_id))
  facts.sort(key=lambda f: (f.subject, f.relation))
  world = KnowledgeWorld(
    config=config,
    entities=tuple(ents),
    facts=tuple(facts),
    documents=tuple(documents),
    questions=(),
    distractor_entities=tuple(ghosts),
    distractor_facts=tuple(dis_facts),
    compositional_paths=(),
  )
  qs, comp_paths = questions_lib.make_questions(rng, world)
  return dataclasses.replace(
    world, questions=tuple(qs), compositional_paths=tuple(comp_paths)
  )
