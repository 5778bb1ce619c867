r"""Parameter paths and boolean masks selected by regex over those paths.

A leaf's path string joins its pytree keys with '/': `{'layers': [{'mlp':
{'kernel': x}}]}` gives `layers/0/mlp/kernel`. For a Flax NNX `nnx.State`
the trailing `.value` attribute of each `Variable` is dropped, so the paths
read like the module attributes (`layers/0/kernel`, `norm/scale`).

Patterns are Python regexes matched against the whole path with
`re.fullmatch` by default (`'.*bias'`, `'layers/[01]/.*'`), so a pattern
never selects more than it spells out; pass `match='search'` to match
anywhere in the path (`'bias'`). A pattern that selects no leaf is an error
(a misspelt name would otherwise silently freeze or decay nothing).

`resolve_targets(tree, {pattern: value})` is the same matcher for
transforms that treat each selected leaf differently (NSPO's null-space
projection per capture site, CKU's neuron mask per axis); it reads a
`(?P<layer>\d+)` group as the layer index and matches with `re.search` by
default (see its docstring).
"""

import re
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax

MATCH_MODES = ('fullmatch', 'search')
_SHOWN_PATHS = 8


def _key_str(key) -> str:
  if isinstance(key, jax.tree_util.DictKey):
    return str(key.key)
  if isinstance(key, jax.tree_util.SequenceKey):
    return str(key.idx)
  if isinstance(key, jax.tree_util.GetAttrKey):
    return key.name
  if isinstance(key, jax.tree_util.FlattenedIndexKey):
    return str(key.key)
  return str(key)


def path_str(keypath: Sequence[Any]) -> str:
  """Joins a `jax.tree_util` key path with '/' (see module docstring).

  Args:
    keypath: the key tuple from `jax.tree_util.tree_flatten_with_path`.

  Returns:
    e.g. `'layers/3/mlp/gate_proj/kernel'`.
  """
  keys = list(keypath)
  if (
    len(keys) > 1
    and isinstance(keys[-1], jax.tree_util.GetAttrKey)
    and keys[-1].name == 'value'
  ):
    keys = keys[:-1]  # nnx.Variable's payload
  return '/'.join(_key_str(k) for k in keys)


def leaf_paths(params: Any) -> list[str]:
  """Path strings of all leaves of `params`, in flattening order."""
  flat, _ = jax.tree_util.tree_flatten_with_path(params)
  return [path_str(p) for p, _ in flat]


def _compile(patterns: Iterable[str]) -> list[tuple[str, re.Pattern]]:
  if isinstance(patterns, str):
    patterns = [patterns]
  compiled = []
  for pattern in patterns:
    if not isinstance(pattern, str):
      raise ValueError(
        f'Parameter patterns must be regex strings; got {pattern!r}.'
      )
    try:
      compiled.append((pattern, re.compile(pattern)))
    except re.error as e:
      raise ValueError(f'Invalid parameter pattern {pattern!r}: {e}.') from e
  return compiled


def path_mask(
  params: Any,
  patterns: str | Iterable[str],
  match: str = 'fullmatch',
  allow_unmatched: bool = False,
) -> Any:
  """Boolean mask: True where a leaf's path matches any of `patterns`.

  Args:
    params: any pytree (dict, `nnx.State`, ...).
    patterns: one regex or a list of regexes.
    match: `'fullmatch'` (whole path) or `'search'` (anywhere in the path).
    allow_unmatched: do not raise for patterns that select nothing.

  Returns:
    A pytree with the structure of `params` and Python bool leaves (for an
    `nnx.State`, the bools sit inside the `Variable`s, as optax masks need).

  Raises:
    ValueError: invalid regex, unknown `match`, or a pattern that matches
      no leaf (the message lists some available paths).
  """
  if match not in MATCH_MODES:
    raise ValueError(
      f'Unknown match {match!r}; allowed values: {", ".join(MATCH_MODES)}.'
    )
  compiled = _compile(patterns)
  hits = {pattern: 0 for pattern, _ in compiled}

  def leaf_mask(keypath, _):
    path = path_str(keypath)
    selected = False
    for pattern, regex in compiled:
      if getattr(regex, match)(path) is not None:
        hits[pattern] += 1
        selected = True
    return selected

  mask = jax.tree_util.tree_map_with_path(leaf_mask, params)
  unmatched = [p for p, n in hits.items() if n == 0]
  if unmatched and not allow_unmatched:
    paths = leaf_paths(params)
    shown = ', '.join(paths[:_SHOWN_PATHS])
    more = f' (and {len(paths) - _SHOWN_PATHS} more)' if len(paths) > 8 else ''
    raise ValueError(
      f'Parameter pattern(s) {unmatched} match no parameter path '
      f'(re.{match}). Available paths: {shown}{more}.'
    )
  return mask


def path_labels(
  params: Any,
  patterns: str | Iterable[str],
  label: str,
  default: str,
  match: str = 'fullmatch',
) -> Any:
  """Label pytree for `optax.multi_transform`: `label` where a pattern
  matches (see `path_mask`), `default` elsewhere."""
  mask = path_mask(params, patterns, match=match)
  return jax.tree.map(lambda m: label if m else default, mask)


class LeafTarget(NamedTuple):
  """What one matched leaf maps to (see `resolve_targets`).

  Attributes:
    value: the value of the pattern that matched (e.g. an NSPO capture site
      such as `'mlp_in'`, or a CKU neuron axis).
    layer: the pattern's `(?P<layer>\\d+)` group as an int, or None when the
      pattern has no such group (e.g. a scan-stacked `[L, ...]` kernel).
  """

  value: Any
  layer: int | None


def resolve_targets(
  tree: Any, targets: Mapping[str, Any], match: str = 'search'
) -> dict[str, LeafTarget]:
  """Maps each leaf path of `tree` to the value of the pattern it matches.

  The `{pattern: value}` form of `path_mask`, for transforms that treat
  each selected leaf differently (NSPO's projection by capture site, CKU's
  neuron mask by axis). Paths are `path_str`'s. Matching defaults to
  `re.search`: target patterns name a module suffix anchored with `$`
  (`r'layers/(?P<layer>\\d+)/mlp/down_proj/kernel$'`), so the same pattern
  selects the kernel under any prefix; pass `match='fullmatch'` to require
  the whole path.

  Args:
    tree: parameter (or update) pytree.
    targets: `{regex: value}`; a leaf may match at most one pattern, and
      every pattern must match at least one leaf.
    match: one of `MATCH_MODES`.

  Returns:
    `{leaf path: LeafTarget(value, layer)}` for the matched leaves only.

  Raises:
    ValueError: empty `targets`, an invalid regex, a pattern that matches
      no leaf (listing some of the paths there are), or a leaf that matches
      two patterns.
  """
  if match not in MATCH_MODES:
    raise ValueError(
      f'Unknown match {match!r}; allowed values: {", ".join(MATCH_MODES)}.'
    )
  if not targets:
    raise ValueError('targets is empty: give at least one {pattern: value}.')
  compiled = [(p, r, targets[p]) for p, r in _compile(list(targets))]
  paths = leaf_paths(tree)
  out: dict[str, LeafTarget] = {}
  hits = {p: 0 for p, _, _ in compiled}
  for path in paths:
    found = None
    for pattern, regex, value in compiled:
      m = getattr(regex, match)(path)
      if m is None:
        continue
      if found is not None:
        raise ValueError(
          f'parameter {path!r} matches two target patterns: '
          f'{found[0]!r} and {pattern!r}.'
        )
      layer = m.groupdict().get('layer')
      found = (
        pattern,
        LeafTarget(value, None if layer is None else int(layer)),
      )
      hits[pattern] += 1
    if found is not None:
      out[path] = found[1]
  missing = [p for p, n in hits.items() if n == 0]
  if missing:
    shown = ', '.join(paths[:_SHOWN_PATHS])
    more = ' ...' if len(paths) > _SHOWN_PATHS else ''
    raise ValueError(
      f'target pattern(s) {missing} match no parameter (re.{match}); the '
      f'tree has: {shown}{more}'
    )
  return out
