"""The top-level README's library example runs as written and learns."""

import contextlib
import io
import os
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _example() -> str:
  text = (ROOT / 'README.md').read_text()
  section = text[text.index('## Using the library') :]
  return re.search(r'```python\n(.*?)```', section, re.S).group(1)


def test_readme_example_runs_and_prints_its_progress(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # its runs/ folder lands here
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(_example(), 'README.md', 'exec'), {'__name__': 'readme'})
  lines = out.getvalue().splitlines()
  first, last = map(float, re.findall(r'[\d.]+', lines[0])[:2])
  assert lines[0].startswith('SFT loss') and last < 0.5 * first
  rewards = [float(line.split()[-1]) for line in lines[1:]]
  assert len(rewards) == 4 and lines[1].startswith('GRPO step  10')
  # Some groups are solved, not all: the reward has signal for GRPO.
  assert 0.0 < sum(rewards) / len(rewards) < 1.0
  assert os.path.isdir(tmp_path / 'runs' / 'quickstart' / 'grpo')
