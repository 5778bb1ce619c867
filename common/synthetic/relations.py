"""Relations of the knowledge world and their paraphrase templates.

Each relation is functional (one object per subject). Its templates:

* `doc`: sentences stating the fact in a document (`{s}`, `{o}`).
* `np`: noun phrases for the object given a subject phrase (`{s}`); used
  to nest multi-hop questions ("the country where the founder of X was
  born") and in golden-trace thoughts. Only entity-valued relations need
  to nest, but every relation has one.
* `question`: questions asking for the object (`{s}`).
* `query`: search queries for one hop, as in golden decompositions.

Every document and query template of a relation shares one keyword
(`KEYWORDS`) that no other relation's documents use, so a lexical retriever
given a golden sub-query (subject name + keyword) usually ranks the golden
document near the top; what stays hard is look-alike names, other facts
about the same entity, and reading.

Attribute relations (years, professions, genres, languages) have literal
objects and can only be the last hop of a question.

`DISTRACTOR_RELATIONS` are never asked about; their documents mention an
entity together with another entity of the type a question expects, so a
reader that copies any name of the right type from a retrieved document is
wrong.
"""

from __future__ import annotations

import dataclasses

ENTITY_TYPES = ('country', 'city', 'university', 'company', 'band', 'person')
PROFESSIONS = (
  'painter', 'engineer', 'chemist', 'poet', 'architect', 'pilot',
  'surgeon', 'lawyer', 'farmer', 'composer', 'sculptor', 'astronomer',
)  # fmt: skip
GENRES = ('jazz', 'folk', 'punk', 'blues', 'reggae', 'techno', 'opera', 'soul')
INDUSTRIES = (
  'shipping', 'software', 'mining', 'textiles', 'aviation', 'banking',
  'farming', 'publishing',
)  # fmt: skip
ATTRIBUTE_TYPES = ('year', 'profession', 'genre', 'industry', 'language')


@dataclasses.dataclass(frozen=True)
class Relation:
  """A functional relation and its paraphrase templates."""

  name: str
  subject_type: str
  object_type: str
  doc: tuple[str, ...]
  np: tuple[str, ...]
  question: tuple[str, ...]
  query: tuple[str, ...]

  @property
  def entity_valued(self) -> bool:
    return self.object_type in ENTITY_TYPES


def _r(name, subj, obj, doc, np_, question, query) -> Relation:
  return Relation(
    name, subj, obj, tuple(doc), tuple(np_), tuple(question), tuple(query)
  )


RELATIONS: dict[str, Relation] = {
  r.name: r
  for r in (
    _r(
      'born_in', 'person', 'city',
      ['{s} was born in {o}.', '{s} was born and raised in {o}.',
       '{o} is where {s} was born.', 'Born in {o}, {s} grew up there.',
       'It was in {o} that {s} was born.'],
      ['the city where {s} was born', 'the town {s} was born in',
       'the place where {s} was born'],
      ['Where was {s} born?', 'In which city was {s} born?',
       'What city was {s} born in?', 'Which town was {s} born in?'],
      ['where was {s} born', 'city {s} was born in', '{s} born in'],
    ),
    _r(
      'studied_at', 'person', 'university',
      ['{s} studied at {o}.', 'At {o}, {s} studied for four years.',
       '{o} is where {s} studied.', '{s} studied and graduated at {o}.'],
      ['the university where {s} studied', 'the school {s} studied at',
       'the place where {s} studied'],
      ['Where did {s} study?', 'Which university did {s} attend?',
       'At which university did {s} study?'],
      ['where {s} studied', 'university {s} studied at', '{s} studied at'],
    ),
    _r(
      'member_of', 'person', 'band',
      ['{s} is a member of {o}.', '{s} became a member of the band {o}.',
       '{o} has {s} as a member.', 'As a member of {o}, {s} plays guitar.'],
      ['the band {s} is a member of', 'the band of {s}',
       'the group with {s} as a member'],
      ['Which band is {s} a member of?', 'In which band does {s} play?',
       'What band does {s} belong to?'],
      ['band {s} is a member of', '{s} member of which band',
       '{s} band member'],
    ),
    _r(
      'birth_year', 'person', 'year',
      ['The birth year of {s} is {o}.', '{s} has {o} as birth year.',
       'Birth records list {o} as the year of {s}.',
       'According to birth records, {s} arrived in {o}.'],
      ['the birth year of {s}', 'the year of birth of {s}'],
      ['In which year was {s} born?', 'When was {s} born?',
       'What is the birth year of {s}?'],
      ['birth year of {s}', '{s} year of birth', 'when was the birth of {s}'],
    ),
    _r(
      'profession', 'person', 'profession',
      ['{s} is a {o} by profession.', 'By profession, {s} is a {o}.',
       'The profession of {s} is {o}.', '{s} chose the profession of {o}.'],
      ['the profession of {s}', 'the job of {s}'],
      ['What is the profession of {s}?', 'What does {s} work as?',
       'What is the job of {s}?'],
      ['profession of {s}', 'what is the profession of {s}',
       '{s} profession'],
    ),
    _r(
      'founded_by', 'company', 'person',
      ['{s} was founded by {o}.', '{o} founded {s}.',
       '{o} founded the company {s}.', '{s} was founded by the young {o}.'],
      ['the founder of {s}', 'the person who founded {s}',
       'the person who started {s}'],
      ['Who founded {s}?', 'Who is the founder of {s}?',
       'Which person started {s}?'],
      ['who founded {s}', 'person who founded {s}', '{s} founded by'],
    ),
    _r(
      'headquartered_in', 'company', 'city',
      ['The headquarters of {s} are in {o}.',
       '{s} has its headquarters in {o}.',
       '{o} hosts the headquarters of {s}.',
       'From its headquarters in {o}, {s} runs its business.'],
      ['the city with the headquarters of {s}', 'the home city of {s}',
       'the city where {s} is based'],
      ['Where is {s} headquartered?', 'In which city is {s} based?',
       'Which city hosts the headquarters of {s}?'],
      ['headquarters of {s}', 'where are the headquarters of {s}',
       '{s} headquarters city'],
    ),
    _r(
      'founded_year', 'company', 'year',
      ['{s} was established in {o}.', '{s} was established in the year {o}.',
       'Established in {o}, {s} grew quickly.',
       'The company {s} was established back in {o}.'],
      ['the year {s} was established', 'the founding year of {s}'],
      ['When was {s} founded?', 'In which year was {s} established?',
       'What is the founding year of {s}?'],
      ['when was {s} established', 'year {s} was established',
       '{s} established in'],
    ),
    _r(
      'industry', 'company', 'industry',
      ['{s} works in the {o} industry.', 'The industry of {s} is {o}.',
       '{s} is a leader in the {o} industry.',
       'In the {o} industry, {s} is well known.'],
      ['the industry of {s}', 'the trade of {s}'],
      ['What industry is {s} in?', 'What is the main trade of {s}?',
       'In which industry does {s} work?'],
      ['industry of {s}', 'what industry is {s} in', '{s} industry'],
    ),
    _r(
      'formed_in', 'band', 'city',
      ['{s} was formed in {o}.', 'The band {s} formed in {o}.',
       '{o} is where {s} formed.', 'Formed in {o}, {s} soon went on tour.'],
      ['the city where {s} formed', 'the home town of {s}',
       'the city {s} formed in'],
      ['Where was {s} formed?', 'In which city did {s} start out?',
       'What is the home town of {s}?'],
      ['where was {s} formed', 'city {s} formed in', '{s} formed in'],
    ),
    _r(
      'genre', 'band', 'genre',
      ['{s} plays {o} music.', 'The music of {s} is {o}.',
       '{s} is known for {o} music.',
       'Critics call the music of {s} pure {o}.'],
      ['the genre of {s}', 'the kind of music {s} plays'],
      ['What genre does {s} play?', 'What kind of music does {s} make?',
       'What is the genre of {s}?'],
      ['music genre of {s}', 'what music does {s} play', '{s} music'],
    ),
    _r(
      'lead_singer', 'band', 'person',
      ['The lead singer of {s} is {o}.', '{o} is the singer of {s}.',
       '{s} has {o} as its lead singer.',
       'Fans know {o} as the singer of {s}.'],
      ['the lead singer of {s}', 'the singer of {s}', 'the voice of {s}'],
      ['Who is the lead singer of {s}?', 'Who sings lead for {s}?',
       'Who is the singer of {s}?'],
      ['lead singer of {s}', 'who is the singer of {s}', '{s} singer'],
    ),
    _r(
      'campus_in', 'university', 'city',
      ['The campus of {s} is in {o}.', '{s} has its campus in {o}.',
       '{o} hosts the campus of {s}.',
       'Students of {s} live on a campus in {o}.'],
      ['the city where {s} is located', 'the campus city of {s}',
       'the city that hosts {s}'],
      ['Where is {s} located?', 'In which city is {s}?',
       'Which city hosts the campus of {s}?'],
      ['campus of {s}', 'where is the campus of {s}', '{s} campus city'],
    ),
    _r(
      'located_in', 'city', 'country',
      ['{s} is a city in the country of {o}.',
       '{s} lies in the country of {o}.', 'The country of {o} contains {s}.',
       '{o} is the country where {s} lies.'],
      ['the country of {s}', 'the country where {s} lies',
       'the country that contains {s}'],
      ['In which country is {s}?', 'Which country is {s} located in?',
       'What country does {s} lie in?'],
      ['country of {s}', 'which country is {s} in', '{s} country'],
    ),
    _r(
      'capital', 'country', 'city',
      ['The capital of {s} is {o}.', '{o} is the capital city of {s}.',
       '{s} has {o} as its capital.', 'As the capital of {s}, {o} is busy.'],
      ['the capital of {s}', 'the capital city of {s}',
       'the seat of government of {s}'],
      ['What is the capital of {s}?', 'Which city is the capital of {s}?',
       'Where is the seat of government of {s}?'],
      ['capital of {s}', 'what is the capital of {s}', '{s} capital city'],
    ),
    _r(
      'language', 'country', 'language',
      ['The official language of {s} is {o}.', 'The language of {s} is {o}.',
       '{o} is the main language spoken in {s}.',
       'In {s}, the official language is {o}.'],
      ['the official language of {s}', 'the language spoken in {s}'],
      ['What language is spoken in {s}?',
       'What is the official language of {s}?',
       'Which language do people in {s} speak?'],
      ['language of {s}', 'what language is spoken in {s}',
       '{s} official language'],
    ),
  )
}  # fmt: skip


# The word every document and query template of a relation contains.
KEYWORDS = {
  'born_in': 'born',
  'studied_at': 'studied',
  'member_of': 'member',
  'birth_year': 'birth',
  'profession': 'profession',
  'founded_by': 'founded',
  'headquartered_in': 'headquarters',
  'founded_year': 'established',
  'industry': 'industry',
  'formed_in': 'formed',
  'genre': 'music',
  'lead_singer': 'singer',
  'campus_in': 'campus',
  'located_in': 'country',
  'capital': 'capital',
  'language': 'language',
}


@dataclasses.dataclass(frozen=True)
class DistractorRelation:
  """A relation that only appears in distractor documents."""

  name: str
  subject_type: str
  object_type: str
  doc: tuple[str, ...]


DISTRACTOR_RELATIONS: tuple[DistractorRelation, ...] = (
  DistractorRelation(
    'visited', 'person', 'city',
    ('{s} once visited {o}.', '{s} spent a summer in {o}.',
     '{s} gave a talk in {o}.'),
  ),
  DistractorRelation(
    'met', 'person', 'person',
    ('{s} once met {o}.', '{s} wrote letters to {o}.',
     '{s} was a friend of {o}.'),
  ),
  DistractorRelation(
    'moved_year', 'person', 'year',
    ('{s} moved house in {o}.', 'In {o}, {s} went abroad for a year.'),
  ),
  DistractorRelation(
    'lectured_at', 'person', 'university',
    ('{s} gave a lecture at {o}.', '{s} visited {o} as a guest.'),
  ),
  DistractorRelation(
    'sells_in', 'company', 'city',
    ('{s} sells its products in {o}.', '{s} opened a shop in {o}.'),
  ),
  DistractorRelation(
    'hired', 'company', 'person',
    ('{s} once hired {o}.', '{o} worked for {s} for a while.'),
  ),
  DistractorRelation(
    'toured', 'band', 'city',
    ('{s} played a concert in {o}.', '{s} toured through {o}.'),
  ),
  DistractorRelation(
    'trades_with', 'country', 'country',
    ('{s} trades with {o}.', '{s} signed a treaty with {o}.'),
  ),
  DistractorRelation(
    'twinned_with', 'city', 'city',
    ('{s} is twinned with {o}.', '{s} has a rail link to {o}.'),
  ),
)  # fmt: skip


def relation(name: str) -> Relation:
  """Looks up a relation by name."""
  if name not in RELATIONS:
    raise KeyError(
      f'unknown relation {name!r}; known: {", ".join(sorted(RELATIONS))}'
    )
  return RELATIONS[name]


def relation_paths(max_hops: int) -> list[tuple[str, ...]]:
  """All type-compatible relation chains of 1 to `max_hops` relations.

  A chain may not follow a relation by its own inverse when that always
  returns to the start (capital then located_in). Attribute relations only
  end a chain. Ordered by length, then name (deterministic).

  Args:
    max_hops: longest chain.

  Returns:
    The chains, as tuples of relation names.
  """
  if max_hops < 1:
    raise ValueError(f'max_hops must be >= 1, got {max_hops}')
  inverse_pairs = {('capital', 'located_in')}
  paths = [(r,) for r in sorted(RELATIONS)]
  frontier = list(paths)
  for _ in range(max_hops - 1):
    nxt = []
    for p in frontier:
      last = RELATIONS[p[-1]]
      if not last.entity_valued:
        continue
      for r in sorted(RELATIONS):
        if RELATIONS[r].subject_type != last.object_type:
          continue
        if (p[-1], r) in inverse_pairs:
          continue
        nxt.append(p + (r,))
    paths.extend(nxt)
    frontier = nxt
  return paths


def template_texts() -> list[str]:
  """All template texts with the slots removed (for tokenizer vocabularies)."""
  out = []
  for r in RELATIONS.values():
    for t in r.doc + r.np + r.question + r.query:
      out.append(t.replace('{s}', '').replace('{o}', ''))
  for d in DISTRACTOR_RELATIONS:
    out.extend(t.replace('{s}', '').replace('{o}', '') for t in d.doc)
  out.extend(PROFESSIONS + GENRES + INDUSTRIES)
  return out
