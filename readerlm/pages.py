"""Synthetic entity pages with clutter, gold Markdown and gold JSON.

`build_pages(world, config)` renders one page per knowledge-world entity
(with at least `min_facts` facts): the main content (a title, its
category line (the JSON `type`), a paragraph
of the entity's fact sentences, a nested list of its relations with links
to the related entities, a key/value table and a JSON code block) inside a
page wrapper chosen per page (`<main>`, `<article>`, `<div id="content">`,
`<div class="post">`), surrounded by a random subset, in random order, of
real-world clutter: a navigation bar, a cookie banner, ads, a related-links
box, a footer, a newsletter box and inline scripts/styles. With
probability `invalid_list_prob` the nested list is written as a `<ul>`
directly inside a `<ul>` (invalid but common; markdownify flattens it).

Gold: the main content as Markdown (ATX headings, `- ` bullets nested by 2
spaces, GFM table, fenced code) and as JSON conforming to `SCHEMA`. Pages
are split into train and test by entity (`test_fraction`, seeded), so test
pages are about entities no training page describes.
"""

from __future__ import annotations

import dataclasses
import html
import json
from typing import Any

import numpy as np

from common import synthetic

SCHEMA: dict[str, Any] = {
  'type': 'object',
  'properties': {
    'name': {'type': 'string'},
    'type': {'type': 'string'},
    'facts': {
      'type': 'array',
      'items': {
        'type': 'object',
        'properties': {
          'relation': {'type': 'string'},
          'value': {'type': 'string'},
        },
        'required': ['relation', 'value'],
        'additionalProperties': False,
      },
    },
  },
  'required': ['name', 'type', 'facts'],
  'additionalProperties': False,
}
SECTIONS = ('paragraph', 'list', 'table', 'code')
CLUTTER = ('nav', 'cookie', 'ad', 'related', 'footer', 'newsletter', 'script')
SITES = ('WikiWorld', 'Atlas Daily', 'The Register of Things', 'OpenFacts')


@dataclasses.dataclass(frozen=True)
class PageConfig:
  """What a page holds.

  Attributes:
    sections: main-content sections among `SECTIONS`, in this order.
    clutter: clutter kinds among `CLUTTER` a page may get.
    clutter_prob: probability of each clutter kind on a page.
    max_facts: facts shown per page at most.
    min_facts: entities with fewer facts get no page.
    invalid_list_prob: probability of `<ul>` directly inside `<ul>`.
    test_fraction: share of entities whose pages form the test split.
    max_pages: pages at most (train + test), after the split.
  """

  sections: tuple[str, ...] = SECTIONS
  clutter: tuple[str, ...] = CLUTTER
  clutter_prob: float = 0.7
  max_facts: int = 4
  min_facts: int = 2
  invalid_list_prob: float = 0.3
  test_fraction: float = 0.25
  max_pages: int = 10_000

  def __post_init__(self):
    bad = [s for s in self.sections if s not in SECTIONS]
    if bad or not self.sections:
      raise ValueError(f'PageConfig.sections {bad} not among {SECTIONS}')
    bad = [s for s in self.clutter if s not in CLUTTER]
    if bad:
      raise ValueError(f'PageConfig.clutter {bad} not among {CLUTTER}')
    for name in ('clutter_prob', 'invalid_list_prob'):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f'PageConfig.{name} must be in [0, 1]')
    if not 0.0 < self.test_fraction < 1.0:
      raise ValueError('PageConfig.test_fraction must be in (0, 1)')
    if self.min_facts < 1 or self.max_facts < self.min_facts:
      raise ValueError('PageConfig needs 1 <= min_facts <= max_facts')


def _label(relation: str) -> str:
  return relation.replace('_', ' ').capitalize()


def _main_html(ent, facts, world, cfg, rng) -> tuple[str, str, dict]:
  """(main HTML, gold Markdown, gold JSON) of one entity."""
  e = html.escape
  h = [f'<h1>{e(ent.name)}</h1>', f'<p>Category: {ent.type}</p>']
  md = [f'# {ent.name}', f'Category: {ent.type}']
  rows = []
  for f in facts:
    obj = world.entity_by_id.get(f.object)
    rows.append((_label(f.relation), world.object_name(f), obj))
  for section in cfg.sections:
    if section == 'paragraph':
      sents = [
        world.document_by_id[f.doc_id]['contents'].split('\n', 1)[1].strip()
        for f in facts[:2]
      ]
      text = ' '.join(sents)
      h.append(f'<p>{e(text)}</p>')
      md.append(text)
    elif section == 'list':
      h.append('<h2>Facts</h2>')
      md.append('## Facts')
      invalid = rng.random() < cfg.invalid_list_prob
      items, lines = [], []
      for label, value, obj in rows:
        if obj is not None:
          link_h = f'<a href="/wiki/{obj.id}">{e(value)}</a>'
          link_m = f'[{value}](/wiki/{obj.id})'
        else:
          link_h, link_m = e(value), value
        sub_h = f'<ul><li>{link_h}</li></ul>'
        items.append(
          f'<li>{e(label)}</li>{sub_h}' if invalid
          else f'<li>{e(label)}{sub_h}</li>'
        )  # fmt: skip
        lines += [f'- {label}', f'  - {link_m}']
      h.append('<ul>' + ''.join(items) + '</ul>')
      md.append('\n'.join(lines))
    elif section == 'table':
      body = ''.join(
        f'<tr><td>{e(label)}</td><td>{e(value)}</td></tr>'
        for label, value, _ in rows
      )
      h.append(
        '<table><thead><tr><th>Field</th><th>Value</th></tr></thead>'
        f'<tbody>{body}</tbody></table>'
      )
      md.append(
        '| Field | Value |\n| --- | --- |\n'
        + '\n'.join(f'| {label} | {value} |' for label, value, _ in rows)
      )
    elif section == 'code':
      record = json.dumps({'id': ent.id, 'type': ent.type})
      h.append(f'<pre><code class="language-json">{e(record)}</code></pre>')
      md.append(f'```json\n{record}\n```')
  gold_json = {
    'name': ent.name,
    'type': ent.type,
    'facts': [{'relation': label, 'value': value} for label, value, _ in rows],
  }
  return '\n'.join(h), '\n\n'.join(md) + '\n', gold_json


def _clutter(kind: str, site: str, others: list, rng) -> str:
  if kind == 'nav':
    links = ['Home', 'Topics', 'Places', 'People', 'About', 'Contact']
    k = int(rng.integers(3, len(links) + 1))
    lis = ''.join(f'<li><a href="/{x.lower()}">{x}</a></li>' for x in links[:k])
    return f'<nav class="site-nav"><ul>{lis}</ul></nav>'
  if kind == 'cookie':
    return (
      '<div id="cookie-banner" class="cookie-consent"><p>We use cookies to '
      'improve your experience. By continuing you accept our cookie '
      'policy.</p><button>Accept all</button></div>'
    )
  if kind == 'ad':
    product = ['premium maps', 'travel insurance', 'a smart kettle'][
      int(rng.integers(3))
    ]
    return (
      f'<div class="ad-slot sponsored"><p>Sponsored: buy {product} today '
      'and save 20 percent.</p></div>'
    )
  if kind == 'related':
    lis = ''.join(
      f'<li><a href="/wiki/{o.id}">{html.escape(o.name)}</a></li>'
      for o in others
    )
    return (
      '<aside class="related-links"><h3>Related pages</h3>'
      f'<ul>{lis}</ul></aside>'
    )
  if kind == 'footer':
    return (
      f'<footer><p>Copyright 2025 {site}. All rights reserved.</p><p>'
      '<a href="/privacy">Privacy</a> | <a href="/terms">Terms</a></p>'
      '</footer>'
    )
  if kind == 'newsletter':
    return (
      '<div class="newsletter-signup"><p>Subscribe to our newsletter for '
      'weekly updates.</p><form><input type="email"/></form></div>'
    )
  return (
    '<script>window.dataLayer = window.dataLayer || []; '
    "track('pageview');</script><style>.ad-slot{color:red}</style>"
  )


def render_page(ent, facts, world, others, cfg: PageConfig, rng) -> dict:
  """One page dict: `id, entity, html, markdown, json`."""
  main, md, gold = _main_html(ent, facts, world, cfg, rng)
  site = SITES[int(rng.integers(len(SITES)))]
  kinds = [k for k in cfg.clutter if rng.random() < cfg.clutter_prob]
  kinds = [kinds[i] for i in rng.permutation(len(kinds))]
  before = [k for k in kinds if k in ('nav', 'cookie', 'script')]
  after = [k for k in kinds if k not in before]
  wrap = int(rng.integers(4))
  opener, closer = [
    ('<main>', '</main>'),
    ('<article>', '</article>'),
    ('<div id="content">', '</div>'),
    ('<div class="post">', '</div>'),
  ][wrap]
  mid = [k for k in after if k == 'ad' and rng.random() < 0.5]
  after = [k for k in after if k not in mid]
  body = (
    [_clutter(k, site, others, rng) for k in before]
    + [opener + main + ''.join(_clutter(k, site, others, rng) for k in mid)
       + closer]
    + [_clutter(k, site, others, rng) for k in after]
  )  # fmt: skip
  page = (
    f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>'
    f'{html.escape(ent.name)} - {site}</title>'
    '<link rel="stylesheet" href="/s.css"></head><body>'
    + '\n'.join(body)
    + '</body></html>'
  )
  return {
    'id': ent.id,
    'entity': ent.name,
    'html': page,
    'markdown': md,
    'json': gold,
  }


def build_pages(
  world: synthetic.KnowledgeWorld, cfg: PageConfig, seed: int = 0
) -> dict[str, list[dict]]:
  """`{'train': [...], 'test': [...]}` pages, split by entity (seeded)."""
  rng = np.random.default_rng([seed, 7])
  by_subject: dict[str, list] = {}
  for f in world.facts:
    by_subject.setdefault(f.subject, []).append(f)
  ents = [
    e for e in world.entities if len(by_subject.get(e.id, [])) >= cfg.min_facts
  ]
  if len(ents) < 2:
    raise ValueError(
      f'the world has {len(ents)} entities with >= {cfg.min_facts} facts; '
      'need at least 2 for a train/test split'
    )
  order = rng.permutation(len(ents))[: cfg.max_pages]
  n_test = max(1, int(round(cfg.test_fraction * len(order))))
  splits = {'test': order[:n_test], 'train': order[n_test:]}
  out = {}
  for name, idx in splits.items():
    pages = []
    for i in idx:
      ent = ents[int(i)]
      facts = by_subject[ent.id][: cfg.max_facts]
      others = [ents[int(j)] for j in rng.choice(len(ents), 3, replace=False)]
      pages.append(render_page(ent, facts, world, others, cfg, rng))
    out[name] = pages
  return out
