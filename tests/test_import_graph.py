"""The import graph: `common` at the bottom, no cycle, no sideways import.

Parsed from the source (`ast`), so it sees every import, including those
inside functions, without importing anything.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROJECT = ('common', 'experiments')
# Method packages: every top-level folder with an __init__.py but these.
METHODS = sorted(
  p.name
  for p in ROOT.iterdir()
  if (p / '__init__.py').is_file() and p.name not in PROJECT + ('tests',)
)


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix('').parts)
  if parts[-1] == '__init__':
    parts.pop()
  return '.'.join(parts)


def _imports(path: pathlib.Path) -> set[str]:
  """Absolute names of the project modules `path` imports."""
  tree = ast.parse(path.read_text(), str(path))
  module = _module_name(path)
  package = module if path.name == '__init__.py' else module.rpartition('.')[0]
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = package.split('.')
        base = base[: len(base) - node.level + 1]
        name = '.'.join(base + ([node.module] if node.module else []))
      else:
        name = node.module
      out.add(name)
      out.update(f'{name}.{a.name}' for a in node.names)
  tops = set(METHODS) | set(PROJECT)
  return {n for n in out if n.split('.')[0] in tops}


def _sources(top: str):
  return sorted((ROOT / top).rglob('*.py'))


def test_method_packages_found():
  assert {'pica', 'nspo', 'cku', 'dhp', 'graph_attacks'} <= set(METHODS)


@pytest.mark.parametrize('package', METHODS)
def test_method_package_imports_only_itself_and_common(package):
  bad = []
  for path in _sources(package):
    for name in _imports(path):
      top = name.split('.')[0]
      if top not in (package, 'common'):
        bad.append(f'{path.relative_to(ROOT)} imports {name}')
  assert not bad, '\n'.join(bad)


def test_common_imports_no_method_package_or_experiment():
  bad = [
    f'{path.relative_to(ROOT)} imports {name}'
    for path in _sources('common')
    for name in _imports(path)
    if name.split('.')[0] != 'common'
  ]
  assert not bad, '\n'.join(bad)


def _subpackage_graph() -> dict[str, set[str]]:
  """`common.<sub>` -> the other `common.<sub>`s it imports."""
  graph: dict[str, set[str]] = {}
  for path in _sources('common'):
    rel = path.relative_to(ROOT / 'common').parts
    if len(rel) < 2:
      continue  # common/__init__.py
    sub = rel[0]
    deps = graph.setdefault(sub, set())
    for name in _imports(path):
      parts = name.split('.')
      if (
        len(parts) > 1
        and parts[1] != sub
        and (ROOT / 'common' / parts[1]).is_dir()
      ):
        deps.add(parts[1])
  return graph


def test_common_subpackages_form_no_cycle():
  graph = _subpackage_graph()
  state: dict[str, int] = {}

  def visit(node, trail):
    if state.get(node) == 1:
      cycle = trail[trail.index(node) :] + [node]
      pytest.fail('import cycle in common: ' + ' -> '.join(cycle))
    if state.get(node) == 2:
      return
    state[node] = 1
    for dep in sorted(graph.get(node, ())):
      visit(dep, trail + [node])
    state[node] = 2

  for node in sorted(graph):
    visit(node, [])


def test_rl_holds_maths_only():
  assert 'train' not in _subpackage_graph().get('rl', set())
