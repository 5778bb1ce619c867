"""JSON extraction metrics: tree precision/recall/F1 and pass rate.

A JSON value becomes a multiset of nodes, one per leaf: `(path, leaf)` where
the path lists object keys and array positions from the root
(`('facts', 0, 'value')`) and the leaf is the normalised scalar (strings
NFKC, case-folded, whitespace collapsed; numbers as floats; empty objects
and arrays are leaves of their own). With `M` the multiset intersection
size, `P = M / |pred nodes|`, `R = M / |gold nodes|`, `F1 = 2PR/(P+R)`; an
unparsable prediction has no nodes (P = R = F1 = 0).

Pass rate: the share of outputs that parse as JSON *and* conform to the
schema. `jsonschema` is not installed, so `validate` checks the subset of
JSON Schema the extraction schemas use (`type` incl. lists of types,
`properties`, `required`, `additionalProperties: false`, `items`, `enum`,
`minItems`/`maxItems`); `check_schema` refuses a schema that is not valid
JSON Schema in that subset (unknown type names, a non-list `required`,
...) with a `SchemaError` naming where.
"""

from __future__ import annotations

import collections
import json
import unicodedata
from collections.abc import Mapping
from typing import Any

TYPES = ('object', 'array', 'string', 'number', 'integer', 'boolean', 'null')


class SchemaError(ValueError):
  """The schema itself is not valid (JSON Schema subset)."""


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


def check_schema(schema: Any, where: str = '$') -> None:
  """Raises `SchemaError` unless `schema` is valid in the supported subset."""
  if not isinstance(schema, Mapping):
    raise SchemaError(f'{where}: a schema must be an object, got {schema!r}')
  t = schema.get('type')
  if t is not None:
    ts = t if isinstance(t, list) else [t]
    bad = [x for x in ts if x not in TYPES]
    if bad or not ts:
      raise SchemaError(f'{where}.type: {t!r} is not one of {TYPES}')
  props = schema.get('properties', {})
  if not isinstance(props, Mapping):
    raise SchemaError(f'{where}.properties: must be an object, got {props!r}')
  for k, v in props.items():
    check_schema(v, f'{where}.properties.{k}')
  req = schema.get('required', [])
  if not isinstance(req, list) or not all(isinstance(x, str) for x in req):
    raise SchemaError(f'{where}.required: must be a list of strings: {req!r}')
  if 'items' in schema:
    check_schema(schema['items'], f'{where}.items')
  if 'enum' in schema and not isinstance(schema['enum'], list):
    raise SchemaError(f'{where}.enum: must be a list, got {schema["enum"]!r}')
  for key in ('minItems', 'maxItems'):
    v = schema.get(key)
    if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
      raise SchemaError(f'{where}.{key}: must be an integer, got {v!r}')


def _is_type(value: Any, t: str) -> bool:
  return {
    'object': lambda: isinstance(value, dict),
    'array': lambda: isinstance(value, list),
    'string': lambda: isinstance(value, str),
    'number': lambda: (
      isinstance(value, int | float) and not isinstance(value, bool)
    ),
    'integer': lambda: isinstance(value, int) and not isinstance(value, bool),
    'boolean': lambda: isinstance(value, bool),
    'null': lambda: value is None,
  }[t]()


def validate(value: Any, schema: Mapping, where: str = '$') -> list[str]:
  """Violations of `schema` by `value` (empty: it conforms)."""
  errors = []
  t = schema.get('type')
  if t is not None:
    ts = t if isinstance(t, list) else [t]
    if not any(_is_type(value, x) for x in ts):
      return [f'{where}: expected {t}, got {type(value).__name__}']
  if 'enum' in schema and value not in schema['enum']:
    errors.append(f'{where}: {value!r} not in enum {schema["enum"]}')
  if isinstance(value, dict):
    props = schema.get('properties', {})
    for k in schema.get('required', []):
      if k not in value:
        errors.append(f'{where}: missing required {k!r}')
    for k, v in value.items():
      if k in props:
        errors += validate(v, props[k], f'{where}.{k}')
      elif schema.get('additionalProperties') is False:
        errors.append(f'{where}: unexpected property {k!r}')
  if isinstance(value, list):
    if 'minItems' in schema and len(value) < schema['minItems']:
      errors.append(f'{where}: fewer than {schema["minItems"]} items')
    if 'maxItems' in schema and len(value) > schema['maxItems']:
      errors.append(f'{where}: more than {schema["maxItems"]} items')
    if 'items' in schema:
      for i, v in enumerate(value):
        errors += validate(v, schema['items'], f'{where}[{i}]')
  return errors


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
