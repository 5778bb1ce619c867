"""Rule-based Refine and Critique (the pipeline's default backends).

Refine, given the HTML and a draft: split the draft into blocks (blank-line
separated, code fences kept whole); drop blocks whose words are mostly
absent from the page's boilerplate-free main text (navigation, cookie
banners, ads, related links, footers the drafter kept), and blocks that
repeat an earlier one; normalise headings (setext -> ATX, `#` spacing),
bullets (`*`/`+` -> `-`, tab/4-space nesting -> 2 spaces), table rules and
code fences; collapse blank lines.

Critique, given the HTML and an output, returns `(passed, explanation)`:
it fails an output that is empty, covers less than `min_coverage` of the
main text's words, has more than `max_boilerplate` of its words outside
the main text, loops (a word 4-gram repeated `loop_repeats` times or more),
or has an unclosed code fence; for JSON, one that does not parse or does
not conform to the schema.
"""

from __future__ import annotations

import collections
import re

from readerlm import converters
from readerlm import json_eval
from readerlm import metrics

_FENCE = re.compile(r'^(```|~~~)')


def blocks(markdown: str) -> list[str]:
  """Blank-line separated blocks; a fenced code block stays one block."""
  out, cur, in_code = [], [], False
  for line in markdown.replace('\r\n', '\n').split('\n'):
    if _FENCE.match(line.strip()):
      in_code = not in_code
      cur.append(line)
      continue
    if not in_code and not line.strip():
      if cur:
        out.append('\n'.join(cur))
        cur = []
      continue
    cur.append(line)
  if cur:
    out.append('\n'.join(cur))
  return out


def _words(text: str) -> list[str]:
  return [t for t in metrics.tokenize(text) if t.isalnum()]


def _normalise_block(block: str) -> str:
  if _FENCE.match(block.strip()):
    return block.strip()
  lines = block.split('\n')
  if len(lines) == 2 and re.fullmatch(r'=+|-+', lines[1].strip() or 'x'):
    level = '#' if lines[1].strip()[0] == '=' else '##'
    return f'{level} {lines[0].strip()}'
  out = []
  for line in lines:
    line = line.rstrip().replace('\t', '    ')
    m = re.match(r'^( *)([*+-]) +(.*)$', line)
    if m and not re.fullmatch(r'[-*_ ]{3,}', line.strip()):
      depth = (
        len(m.group(1)) // 2 if len(m.group(1)) % 4 else len(m.group(1)) // 4
      )
      line = '  ' * depth + '- ' + m.group(3)
    m = re.match(r'^(#{1,6})\s*(.*?)\s*#*$', line)
    if m and line.lstrip().startswith('#'):
      line = f'{m.group(1)} {m.group(2)}'
    if re.fullmatch(r'\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?', line.strip()):
      n = line.strip().strip('|').count('|') + 1
      line = '| ' + ' | '.join(['---'] * n) + ' |'
    out.append(line)
  return '\n'.join(out)


def refine_markdown(html: str, draft: str, keep_threshold: float = 0.6) -> str:
  """The rule refiner (see module docstring); never raises on bad input."""
  main_words = set(_words(converters.visible_text(
    converters.boilerplate_free(html) or html)))  # fmt: skip
  seen, kept = set(), []
  for block in blocks(draft):
    words = _words(block)
    if not words:
      continue
    inside = sum(w in main_words for w in words) / len(words)
    key = ' '.join(words)
    if inside < keep_threshold or key in seen:
      continue
    seen.add(key)
    kept.append(_normalise_block(block))
  return '\n\n'.join(kept) + ('\n' if kept else '')


def loops(text: str, n: int = 4, repeats: int = 4) -> bool:
  """True if some word n-gram occurs `repeats` times or more."""
  words = text.split()
  grams = collections.Counter(
    tuple(words[i : i + n]) for i in range(len(words) - n + 1)
  )
  return bool(grams) and max(grams.values()) >= repeats


def critique_markdown(
  html: str,
  output: str,
  min_coverage: float = 0.8,
  max_boilerplate: float = 0.1,
  loop_repeats: int = 4,
) -> tuple[bool, str]:
  """Binary verdict and explanation for a Markdown output."""
  words = _words(output)
  if not words:
    return False, 'FAIL: the output is empty.'
  main = _words(converters.visible_text(converters.boilerplate_free(html)))
  main_set, out_set = set(main), set(words)
  coverage = sum(w in out_set for w in main) / max(len(main), 1)
  extra = sum(w not in main_set for w in words) / len(words)
  problems = []
  if coverage < min_coverage:
    problems.append(
      f'covers {coverage:.0%} of the main text (< {min_coverage:.0%})'
    )
  if extra > max_boilerplate:
    problems.append(
      f'{extra:.0%} of its words are not main content (boilerplate)'
    )
  if loops(output, repeats=loop_repeats):
    problems.append('repeats a phrase in a loop')
  if output.count('```') % 2:
    problems.append('has an unclosed code fence')
  if problems:
    return False, 'FAIL: the output ' + '; '.join(problems) + '.'
  return True, (
    f'PASS: covers {coverage:.0%} of the main text with '
    f'{extra:.0%} extra words, no loops, fences balanced.'
  )


def critique_json(output: str, schema) -> tuple[bool, str]:
  """Verdict for a JSON output: parses and conforms to `schema`."""
  value, err = json_eval.parse_json(output)
  if err is not None:
    return False, f'FAIL: {err}.'
  errors = json_eval.validate(value, schema)
  if errors:
    return False, 'FAIL: schema violations: ' + '; '.join(errors[:3]) + '.'
  return True, 'PASS: valid JSON that conforms to the schema.'


def _unlink(text: str) -> str:
  return re.sub(r'\[(.*?)\]\(.*?\)', r'\1', text).strip()


def markdown_to_json(markdown: str) -> dict:
  """The rule JSON drafter: title -> name, table rows (else nested list
  items `- label` / `  - value`) -> facts, category line or code -> type.

  Reads the Markdown a drafter produced (so its mistakes carry over); the
  result may violate the schema (e.g. no title), which Critique catches.
  """
  name, typ, pending = None, None, None
  table, listed = [], []
  for line in markdown.split('\n'):
    s = line.strip()
    if name is None and s.startswith('# '):
      name = s[2:].strip()
    m = re.match(r'^\|\s*(.+?)\s*\|\s*(.+?)\s*\|$', s)
    if m and m.group(1) != 'Field' and not set(m.group(1)) <= set('-: '):
      table.append({'relation': m.group(1), 'value': _unlink(m.group(2))})
    m = re.search(r'"type":\s*"([a-z]+)"', s) or re.match(
      r'^\W*Category:\W*([a-z]+)', s
    )
    if m and typ is None:
      typ = m.group(1)
    m = re.match(r'^( *)[-*+] +(.+)$', line)
    if m and not m.group(1):
      pending = m.group(2).strip()
    elif m and pending is not None:
      listed.append({'relation': pending, 'value': _unlink(m.group(2))})
      pending = None
  out = {'facts': table or listed}
  if name is not None:
    out['name'] = name
  if typ is not None:
    out['type'] = typ
  return out
