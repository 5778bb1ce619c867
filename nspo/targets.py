"""Which parameters a null-space projection (or neuron mask) targets.

Parameters are named by their '/'-joined pytree path, e.g.
`layers/3/mlp/gate_proj/kernel` (a trailing `value` from an NNX `Variable`
is dropped). A *target* maps a regular expression on that path to a capture
*site*: the name of the activation that is the targeted kernel's input
(`mlp_in` for gate/up, `mlp_hidden` for down, ...). The expression's named
group `layer` gives the layer index; without it, the kernel is taken to be a
scan-stacked `[L, d_in, ...]` array covering every layer of the site.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

import jax

# Kernel inputs of a SwiGLU MLP: gate/up read the block's MLP input, down
# reads the hidden activation `act(gate(x)) * up(x)`.
MLP_TARGETS: dict[str, str] = {
  r'layers/(?P<layer>\d+)/mlp/(gate_proj|up_proj)/kernel$': 'mlp_in',
  r'layers/(?P<layer>\d+)/mlp/down_proj/kernel$': 'mlp_hidden',
}
# Attention projections: q/k/v read the attention input, o reads the
# concatenated head outputs.
ATTENTION_TARGETS: dict[str, str] = {
  r'layers/(?P<layer>\d+)/attn/(q_proj|k_proj|v_proj)/kernel$': 'attn_in',
  r'layers/(?P<layer>\d+)/attn/o_proj/kernel$': 'attn_out',
}


class LeafTarget(NamedTuple):
  """Where one parameter leaf's input lives.

  Attributes:
    site: capture-site name, e.g. `mlp_in` (or, for other users of
      `resolve` such as `cku`, whatever value the pattern maps to).
    layer: layer index into the site's stacked statistics, or None when
      the leaf itself is stacked over all layers (`[L, d_in, ...]`).
  """

  site: Any
  layer: int | None


def path_str(path: tuple[Any, ...]) -> str:
  """'/'-joined name of a pytree key path (NNX `.value` suffix dropped)."""
  parts = []
  for key in path:
    if isinstance(key, jax.tree_util.DictKey):
      parts.append(str(key.key))
    elif isinstance(key, jax.tree_util.SequenceKey):
      parts.append(str(key.idx))
    elif isinstance(key, jax.tree_util.GetAttrKey):
      parts.append(key.name)
    elif isinstance(key, jax.tree_util.FlattenedIndexKey):
      parts.append(str(key.key))
    else:
      parts.append(str(key))
  if len(parts) > 1 and parts[-1] == 'value':
    parts = parts[:-1]
  return '/'.join(parts)


def leaf_paths(tree: Any) -> list[str]:
  """'/'-joined paths of every array leaf of `tree`, in flatten order."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return [path_str(p) for p, _ in leaves]


def _compile(targets: Mapping[str, Any]) -> list[tuple[re.Pattern, Any]]:
  if not targets:
    raise ValueError('targets is empty: give at least one {pattern: site}.')
  compiled = []
  for pattern, site in targets.items():
    try:
      compiled.append((re.compile(pattern), site))
    except re.error as e:
      raise ValueError(f'target pattern {pattern!r} is not a regex: {e}') from e
  return compiled


def resolve(tree: Any, targets: Mapping[str, Any]) -> dict[str, LeafTarget]:
  """Matches each leaf path of `tree` against `targets`.

  Args:
    tree: parameter (or update) pytree.
    targets: `{regex: site (or tag)}`; a leaf may match at most one
      pattern, and every pattern must match at least one leaf.

  Returns:
    `{leaf path: LeafTarget}` for the matched leaves only.

  Raises:
    ValueError: a pattern matches no leaf (listing some of the paths there
      are), or a leaf matches two patterns.
  """
  compiled = _compile(targets)
  paths = leaf_paths(tree)
  out: dict[str, LeafTarget] = {}
  hits = {p.pattern: 0 for p, _ in compiled}
  for path in paths:
    found = None
    for regex, site in compiled:
      m = regex.search(path)
      if m is None:
        continue
      if found is not None:
        raise ValueError(
          f'parameter {path!r} matches two target patterns: '
          f'{found[0]!r} and {regex.pattern!r}.'
        )
      layer = m.groupdict().get('layer')
      found = (
        regex.pattern,
        LeafTarget(site, None if layer is None else int(layer)),
      )
      hits[regex.pattern] += 1
    if found is not None:
      out[path] = found[1]
  missing = [p for p, n in hits.items() if n == 0]
  if missing:
    shown = ', '.join(paths[:8]) + (' ...' if len(paths) > 8 else '')
    raise ValueError(
      f'target pattern(s) {missing} match no parameter; the tree has: {shown}'
    )
  return out
