"""The README's example runs as written."""

import pathlib
import re


def test_readme_example_runs():
  text = (pathlib.Path(__file__).parents[2] / 'nspo' / 'README.md').read_text()
  block = re.search(r'```python\n(.*?)```', text, re.S).group(1)
  exec(compile(block, 'nspo/README.md', 'exec'), {})
