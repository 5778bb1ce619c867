"""Runs every side-by-side benchmark and collects their one-line results.

  python -m experiments.benchmarks.run_all [--only=a,b] [--smoke]

Each benchmark is a module `experiments/benchmarks/<name>.py` with a
`main()` that runs the project and its peer in one process and ends by
printing `<name>: <figure>=<value> (<what the ratio compares>)`. Each runs
in its own subprocess (fresh JAX/PyTorch thread pools, no compile caches
shared between them); the result lines are printed again at the end and
written to `--out` if given. A benchmark that fails is reported as FAILED
and makes the job exit non-zero.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

from absl import app
from absl import flags

BENCH_DIR = pathlib.Path(__file__).resolve().parent
BENCHMARKS = tuple(
  sorted(
    p.stem
    for p in BENCH_DIR.glob('*.py')
    if p.stem not in ('__init__', 'run_all')
  )
)
_ONLY = flags.DEFINE_list('only', [], f'Benchmarks to run (of {BENCHMARKS}).')
_SMOKE = flags.DEFINE_bool('smoke', False, 'Minimal sizes (a quick check).')
_OUT = flags.DEFINE_string('out', None, 'File to write the result lines to.')


def result_line(name: str, output: str) -> str | None:
  """The last `<name>: <figure>=<value> ...` line of a benchmark's output."""
  pattern = re.compile(rf'^{re.escape(name)}: \S+=\S+.*$', re.MULTILINE)
  found = pattern.findall(output)
  return found[-1] if found else None


def run_one(name: str, smoke: bool) -> tuple[bool, str]:
  """Runs one benchmark; returns (ok, its result line or the error)."""
  cmd = [sys.executable, '-m', f'experiments.benchmarks.{name}']
  if smoke:
    cmd.append('--smoke')
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  print(proc.stdout, end='', flush=True)
  line = result_line(name, proc.stdout)
  if proc.returncode != 0 or line is None:
    tail = '\n'.join((proc.stdout + proc.stderr).splitlines()[-15:])
    return False, f'{name}: FAILED (exit {proc.returncode})\n{tail}'
  return True, line


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  unknown = sorted(set(_ONLY.value) - set(BENCHMARKS))
  if unknown:
    raise app.UsageError(f'Unknown benchmarks {unknown}; known: {BENCHMARKS}')
  names = [n for n in BENCHMARKS if not _ONLY.value or n in _ONLY.value]
  results = [run_one(n, _SMOKE.value) for n in names]
  lines = [line for _, line in results]
  print('\n'.join(['', '== benchmark results =='] + lines))
  if _OUT.value:
    pathlib.Path(_OUT.value).write_text('\n'.join(lines) + '\n')
  if not all(ok for ok, _ in results):
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
