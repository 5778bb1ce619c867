"""Relations of the knowledge world and their paraphrase templates.

Each relation is functional (one object per subject). Its templates:

* `doc`: sentences stating the fact in a document (`{s}`, `{o}`).
* `np`: noun phrases for the object given a subject phrase (`{s}`); used
  to nest multi-hop questions ("the country where the founder of X was
  born") and in golden-trace thoughts. Only entity-valued relations need
  to nest, but every relation has one.
* `question`: questions asking for the object (`{s}`).
* `query`: search queries for one hop, as in golden decompositions.

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
      ['{s} was born in {o}.', '{s} is a native of {o}.',
       'The birthplace of {s} is {o}.', '{o} is where {s} was born.',
       'In {o}, {s} was born and raised.'],
      ['the birthplace of {s}', 'the city where {s} was born',
       'the place of birth of {s}'],
      ['Where was {s} born?', 'In which city was {s} born?',
       'What is the birthplace of {s}?', 'Which city is {s} a native of?'],
      ['birthplace of {s}', 'where was {s} born', '{s} born in'],
    ),
    _r(
      'studied_at', 'person', 'university',
      ['{s} studied at {o}.', '{s} is a graduate of {o}.',
       '{s} earned a degree from {o}.', '{o} counts {s} among its alumni.'],
      ['the university where {s} studied', 'the alma mater of {s}',
       'the university {s} graduated from'],
      ['Where did {s} study?', 'Which university did {s} attend?',
       'What is the alma mater of {s}?'],
      ['university of {s}', 'where did {s} study', '{s} alma mater'],
    ),
    _r(
      'member_of', 'person', 'band',
      ['{s} is a member of {o}.', '{s} plays in the band {o}.',
       '{o} counts {s} among its members.', '{s} joined {o} early on.'],
      ['the band of {s}', 'the band that {s} plays in',
       'the group of {s}'],
      ['Which band is {s} a member of?', 'In which band does {s} play?',
       'What band does {s} belong to?'],
      ['band of {s}', '{s} member of band', 'which band does {s} play in'],
    ),
    _r(
      'birth_year', 'person', 'year',
      ['{s} was born in the year {o}.', '{s} was born in {o}.',
       'The birth year of {s} is {o}.', 'Records show {s} was born in {o}.'],
      ['the birth year of {s}', 'the year {s} was born'],
      ['In which year was {s} born?', 'When was {s} born?',
       'What is the birth year of {s}?'],
      ['birth year of {s}', 'when was {s} born', '{s} year of birth'],
    ),
    _r(
      'profession', 'person', 'profession',
      ['{s} works as a {o}.', '{s} is a {o} by trade.',
       'By profession, {s} is a {o}.', '{s} made a living as a {o}.'],
      ['the profession of {s}', 'the job of {s}'],
      ['What is the profession of {s}?', 'What does {s} work as?',
       'What is the job of {s}?'],
      ['profession of {s}', 'what does {s} work as', '{s} job'],
    ),
    _r(
      'founded_by', 'company', 'person',
      ['{s} was founded by {o}.', '{o} founded {s}.',
       'The founder of {s} is {o}.', '{o} started the company {s}.'],
      ['the founder of {s}', 'the person who founded {s}',
       'the person who started {s}'],
      ['Who founded {s}?', 'Who is the founder of {s}?',
       'Which person started {s}?'],
      ['founder of {s}', 'who founded {s}', '{s} founded by'],
    ),
    _r(
      'headquartered_in', 'company', 'city',
      ['{s} is headquartered in {o}.', 'The headquarters of {s} are in {o}.',
       '{s} has its main office in {o}.', '{o} is home to the offices of {s}.'],
      ['the headquarters city of {s}', 'the city where {s} is based',
       'the home city of {s}'],
      ['Where is {s} headquartered?', 'In which city is {s} based?',
       'Which city hosts the headquarters of {s}?'],
      ['headquarters of {s}', 'where is {s} based', '{s} main office city'],
    ),
    _r(
      'founded_year', 'company', 'year',
      ['{s} was founded in {o}.', '{s} was established in the year {o}.',
       'The company {s} dates back to {o}.', 'Since {o}, {s} has existed.'],
      ['the founding year of {s}', 'the year {s} was founded'],
      ['When was {s} founded?', 'In which year was {s} established?',
       'What is the founding year of {s}?'],
      ['founding year of {s}', 'when was {s} founded', '{s} established'],
    ),
    _r(
      'industry', 'company', 'industry',
      ['{s} is a {o} company.', '{s} does business in {o}.',
       'The main trade of {s} is {o}.', '{s} earns its money from {o}.'],
      ['the industry of {s}', 'the trade of {s}'],
      ['What industry is {s} in?', 'What is the main trade of {s}?',
       'In which industry does {s} work?'],
      ['industry of {s}', 'what does {s} do', '{s} trade'],
    ),
    _r(
      'formed_in', 'band', 'city',
      ['{s} was formed in {o}.', '{s} got together in {o}.',
       'The band {s} started out in {o}.', '{o} is the home town of {s}.'],
      ['the city where {s} was formed', 'the home town of {s}',
       'the city {s} started out in'],
      ['Where was {s} formed?', 'In which city did {s} start out?',
       'What is the home town of {s}?'],
      ['home town of {s}', 'where was {s} formed', '{s} formed in'],
    ),
    _r(
      'genre', 'band', 'genre',
      ['{s} plays {o} music.', '{s} is known for its {o} songs.',
       'The music of {s} is {o}.', '{s} is a {o} band.'],
      ['the genre of {s}', 'the kind of music {s} plays'],
      ['What genre does {s} play?', 'What kind of music does {s} make?',
       'What is the genre of {s}?'],
      ['genre of {s}', 'what music does {s} play', '{s} music style'],
    ),
    _r(
      'lead_singer', 'band', 'person',
      ['The lead singer of {s} is {o}.', '{o} sings lead for {s}.',
       '{o} is the voice of {s}.', '{s} is fronted by {o}.'],
      ['the lead singer of {s}', 'the singer who fronts {s}',
       'the voice of {s}'],
      ['Who is the lead singer of {s}?', 'Who sings lead for {s}?',
       'Who fronts {s}?'],
      ['lead singer of {s}', 'who sings for {s}', '{s} singer'],
    ),
    _r(
      'campus_in', 'university', 'city',
      ['{s} is located in {o}.', 'The campus of {s} is in {o}.',
       '{o} hosts the campus of {s}.', '{s} sits in the city of {o}.'],
      ['the city where {s} is located', 'the campus city of {s}',
       'the city that hosts {s}'],
      ['Where is {s} located?', 'In which city is {s}?',
       'Which city hosts the campus of {s}?'],
      ['location of {s}', 'where is {s}', '{s} campus city'],
    ),
    _r(
      'located_in', 'city', 'country',
      ['{s} is a city in {o}.', '{s} lies in {o}.',
       '{s} is located in the country of {o}.', '{o} contains {s}.'],
      ['the country of {s}', 'the country where {s} lies',
       'the country that contains {s}'],
      ['In which country is {s}?', 'Which country is {s} located in?',
       'What country does {s} lie in?'],
      ['country of {s}', 'where is {s}', '{s} country'],
    ),
    _r(
      'capital', 'country', 'city',
      ['The capital of {s} is {o}.', '{o} is the capital city of {s}.',
       '{s} is governed from its capital {o}.', '{o} is the seat of {s}.'],
      ['the capital of {s}', 'the capital city of {s}',
       'the seat of government of {s}'],
      ['What is the capital of {s}?', 'Which city is the capital of {s}?',
       'Where is the seat of government of {s}?'],
      ['capital of {s}', 'what is the capital of {s}', '{s} capital city'],
    ),
    _r(
      'language', 'country', 'language',
      ['The official language of {s} is {o}.', 'People in {s} speak {o}.',
       '{o} is spoken in {s}.', 'In {s}, the main language is {o}.'],
      ['the official language of {s}', 'the language spoken in {s}'],
      ['What language is spoken in {s}?',
       'What is the official language of {s}?',
       'Which language do people in {s} speak?'],
      ['language of {s}', 'what language is spoken in {s}', '{s} language'],
    ),
  )
}  # fmt: skip


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
