"""The peer HTML -> Markdown converters as drafters, and main-content tools.

`DRAFTERS` maps a name to `fn(html) -> markdown` for each well-kept
converter (no converter of our own): `html_to_markdown` (Rust core, GFM),
`markdownify` (BeautifulSoup), `html2text` (no wrapping, `body_width=0`)
and `trafilatura` (main-content extraction, Markdown output). Each runs on
the model card's `clean_html` output. A converter that raises or returns
None gives '' (the pipeline records the failure).

`select(html, css_id)` keeps one element by id (the Node.js docs'
`#apicontent`); `boilerplate_free(html)` drops the blocks that are clutter
by tag (`nav`, `footer`, `aside`, `header`, `form`, `button`) or by a
class/id match of `BOILERPLATE_RE` (Readability's "unlikely candidates"
idea), as the rule-based refiner does.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import html2text
import html_to_markdown
import lxml.html
import markdownify
import trafilatura

from readerlm import prompt as prompt_lib

BOILERPLATE_RE = re.compile(
  r'cookie|consent|banner|\bad\b|ad-|ads|sponsor|promo|related|footer|'
  r'\bnav|menu|sidebar|share|social|newsletter|subscribe|signup|comment',
  re.IGNORECASE,
)
BOILERPLATE_TAGS = ('nav', 'footer', 'aside', 'header', 'form', 'button',
                    'script', 'style', 'noscript', 'iframe')  # fmt: skip


def _html_to_markdown(html: str) -> str:
  return html_to_markdown.convert(html).content or ''


def _markdownify(html: str) -> str:
  return markdownify.markdownify(html, heading_style='ATX', bullets='-')


def _html2text(html: str) -> str:
  h = html2text.HTML2Text()
  h.body_width = 0
  h.ignore_images = False
  return h.handle(html)


def _trafilatura(html: str) -> str:
  out = trafilatura.extract(
    html,
    output_format='markdown',
    include_links=True,
    include_tables=True,
    include_formatting=True,
    favor_recall=True,
  )
  return out or ''


DRAFTERS: dict[str, Callable[[str], str]] = {
  'html_to_markdown': _html_to_markdown,
  'markdownify': _markdownify,
  'html2text': _html2text,
  'trafilatura': _trafilatura,
}


def convert(name: str, html: str, clean: bool = True) -> str:
  """Runs drafter `name` on (cleaned) HTML; raises on an unknown name."""
  if name not in DRAFTERS:
    raise ValueError(f'unknown converter {name!r}; known: {sorted(DRAFTERS)}')
  if clean:
    html = prompt_lib.clean_html(html, clean_svg=True, clean_base64=True)
  return DRAFTERS[name](html)


_CONTROL = re.compile('[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')


def _parse(html: str):
  html = _CONTROL.sub('', html)  # lxml refuses control characters
  if not html.strip():
    return None
  try:
    return lxml.html.document_fromstring(html)
  except (ValueError, lxml.etree.ParserError):
    return None


def select(html: str, css_id: str) -> str | None:
  """The outer HTML of the element with `id=css_id`, or None."""
  doc = _parse(html)
  if doc is None:
    return None
  found = doc.xpath('//*[@id=$i]', i=css_id)
  return lxml.html.tostring(found[0], encoding='unicode') if found else None


def boilerplate_free(html: str) -> str:
  """HTML without clutter blocks (see module docstring); '' if unparsable."""
  doc = _parse(html)
  if doc is None:
    return ''
  for el in list(doc.iter()):
    if not isinstance(el.tag, str) or el.getparent() is None:
      continue
    key = f'{el.get("class", "")} {el.get("id", "")}'
    if el.tag in BOILERPLATE_TAGS or (
      el.tag not in ('html', 'body', 'main', 'article')
      and BOILERPLATE_RE.search(key)
    ):
      el.drop_tree()
  return lxml.html.tostring(doc, encoding='unicode')


def visible_text(html: str) -> str:
  """Whitespace-collapsed text of the `<body>` (after `clean_html`); text
  nodes are joined with spaces, so `<li>a<ul><li>b` gives `a b`."""
  doc = _parse(prompt_lib.clean_html(html))
  if doc is None:
    return ''
  body = doc.find('body')
  root = body if body is not None else doc
  return ' '.join(' '.join(root.itertext()).split())
