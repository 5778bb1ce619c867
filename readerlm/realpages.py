"""Real pages: the Node.js API docs (HTML beside its Markdown sources).

`load_nodejs(directory)` pairs `X.html` with `X.md`. The gold Markdown is
normalised: `<!-- ... -->` comments (the YAML and anchor blocks) removed,
blank runs collapsed. Each converter is scored on the whole page and on the
main content (`#apicontent`) with `metrics.markdown_scores`.
"""

from __future__ import annotations

import os
import pathlib
import re

NODEJS_DIR = '/usr/share/doc/nodejs/api'


def normalise_gold(md: str) -> str:
  md = re.sub(r'<!--.*?-->', '', md, flags=re.DOTALL)
  return re.sub(r'\n{3,}', '\n\n', md).strip() + '\n'


def load_nodejs(
  directory: str | os.PathLike = NODEJS_DIR,
  max_pages: int | None = None,
  max_bytes: int = 400_000,
) -> list[dict]:
  """`[{"id", "html", "markdown"}]` for pages with both files, smallest first.

  Pages over `max_bytes` of HTML are skipped (Damerau is O(n m)).

  Raises:
    FileNotFoundError: the directory does not exist (callers skip with a
      message).
  """
  d = pathlib.Path(directory)
  if not d.is_dir():
    raise FileNotFoundError(
      f'{d} does not exist (install the nodejs documentation, or pass '
      '--config.real.nodejs_dir)'
    )
  out = []
  for html_path in sorted(
    d.glob('*.html'), key=lambda p: (p.stat().st_size, p.name)
  ):
    md_path = html_path.with_suffix('.md')
    if not md_path.exists() or html_path.stat().st_size > max_bytes:
      continue
    out.append({
      'id': html_path.stem,
      'html': html_path.read_bytes().decode('utf-8', 'replace'),
      'markdown': normalise_gold(md_path.read_text('utf-8', 'replace')),
    })  # fmt: skip
    if max_pages is not None and len(out) >= max_pages:
      break
  return out
