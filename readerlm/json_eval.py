"""JSON extraction metrics: tree precision/recall/F1 and pass rate.

A JSON value becomes a multiset of nodes, one per leaf: `(path, leaf)` where
the path lists object keys and array positions from the root
(`('facts', 0, 'value')`) and the leaf is the normalised scalar (strings
NFKC, case-folded, whitespace collapsed; numbers as floats; empty objects
and arrays are leaves of their own). With `M` the multiset intersection
size, `P = M / |pred nodes|`, `R = M / |gold nodes|`, `F1 = 2PR/(P+R)`; an
unparsable prediction has no nodes (P = R = F1 = 0).

Pass rate: the share of outputs that parse as JSON *and* conform to the
schema, validated with the `jsonschema` package (the draft the schema's
`$schema` names, Draft 2020-12 by default). `check_schema` refuses a schema
that is not valid JSON Schema (the draft's metaschema: unknown type names, a
non-list `required`, ...) with a `SchemaError` naming where (a JSONPath) and
what is allowed.
"""

from __future__ import annotations

import collections
import json
import unicodedata
from collections.abc import Mapping
from typing import Any

import jsonschema

SIMPLE_TYPES = (
  'object', 'array', 'string', 'number', 'integer', 'boolean', 'null',
)  # fmt: skip


class SchemaError(ValueError):
  """The schema itself is not valid JSON Schema."""


def parse_json(text: str) -> tuple[Any, str | None]:
  """`(value, None)` or `(None, error)`; a ```json fence is stripped."""
  t = text.strip()
  if t.startswith('```'):
    t = t.split('\n', 1)[1] if '\n' in t else ''
    t = t[: t.rfind('```')] if '```' in t else t
  try:
    return json.loads(t), None
  except (json.JSONDecodeError, RecursionError) as e:
    return None, f'invalid JSON: {e}'


def _norm(leaf: Any) -> Any:
  if isinstance(leaf, str):
    return ' '.join(unicodedata.normalize('NFKC', leaf).casefold().split())
  if isinstance(leaf, bool) or leaf is None:
    return leaf
  if isinstance(leaf, int | float):
    return float(leaf)
  return leaf


def tree_nodes(value: Any, path: tuple = ()) -> list[tuple]:
  """`(path, normalised leaf)` nodes of a JSON value (see module docstring)."""
  if isinstance(value, Mapping):
    if not value:
      return [(path, '{}')]
    out = []
    for k, v in value.items():
      out += tree_nodes(v, (*path, str(k)))
    return out
  if isinstance(value, list):
    if not value:
      return [(path, '[]')]
    out = []
    for i, v in enumerate(value):
      out += tree_nodes(v, (*path, i))
    return out
  return [(path, _norm(value))]


def tree_scores(prediction: Any, gold: Any) -> dict[str, float]:
  """Tree precision, recall and F1 of a parsed prediction against gold."""
  p = collections.Counter(map(repr, tree_nodes(prediction)))
  g = collections.Counter(map(repr, tree_nodes(gold)))
  m = sum((p & g).values())
  prec = m / max(sum(p.values()), 1)
  rec = m / max(sum(g.values()), 1)
  f1 = 0.0 if m == 0 else 2 * prec * rec / (prec + rec)
  return {'precision': prec, 'recall': rec, 'f1': f1}


def _validator_class(schema: Any):
  return jsonschema.validators.validator_for(
    schema, default=jsonschema.Draft202012Validator
  )


def check_schema(schema: Any) -> None:
  """Raises `SchemaError` unless `schema` is valid JSON Schema.

  Args:
    schema: a JSON Schema (object or boolean); its `$schema` picks the draft
      (default Draft 2020-12).

  Raises:
    SchemaError: naming the JSONPath of the offending part, its value and
      the metaschema's complaint.
  """
  if not isinstance(schema, Mapping | bool):
    raise SchemaError(
      f'$: a schema must be an object or a boolean, got {schema!r} '
      f'({type(schema).__name__})'
    )
  cls = _validator_class(schema)
  try:
    cls.check_schema(schema)
  except jsonschema.SchemaError as e:
    hint = ''
    if e.json_path.endswith('.type'):
      hint = f'; allowed: one of {SIMPLE_TYPES} or a list of them'
    raise SchemaError(
      f'{e.json_path}: {e.instance!r} is not valid JSON Schema '
      f'({cls.__name__}): {e.message}{hint}'
    ) from None


def validate(value: Any, schema: Mapping) -> list[str]:
  """Violations of `schema` by `value` as `'<JSONPath>: <message>'` (sorted).

  Empty: it conforms. The schema must be valid (`check_schema`).
  """
  validator = _validator_class(schema)(schema)
  return sorted(
    f'{e.json_path}: {e.message}' for e in validator.iter_errors(value)
  )


def json_scores(text: str, gold: Any, schema: Mapping) -> dict[str, float]:
  """`{'precision', 'recall', 'f1', 'valid', 'passed'}` for one output."""
  value, err = parse_json(text)
  if err is not None:
    return {'precision': 0.0, 'recall': 0.0, 'f1': 0.0, 'valid': 0.0,
            'passed': 0.0}  # fmt: skip
  out = tree_scores(value, gold)
  out['valid'] = 1.0
  out['passed'] = float(not validate(value, schema))
  return out
