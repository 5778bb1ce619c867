"""JSON tree P/R/F1, pass rate and the schema checks."""

import pytest

from readerlm import json_eval
from readerlm import pages

GOLD = {'name': 'A', 'type': 'city', 'facts': [{'relation': 'r', 'value': 'v'}]}


def test_tree_nodes_and_scores_hand_computed():
  nodes = json_eval.tree_nodes(GOLD)
  assert nodes == [
    (('name',), 'a'), (('type',), 'city'),
    (('facts', 0, 'relation'), 'r'), (('facts', 0, 'value'), 'v'),
  ]  # fmt: skip
  pred = {'name': ' a ', 'type': 'town', 'facts': [{'relation': 'r'}], 'x': 1}
  # matches: name (normalised), facts.0.relation -> 2 of 4 pred, 2 of 4 gold.
  s = json_eval.tree_scores(pred, GOLD)
  assert s == pytest.approx({'precision': 0.5, 'recall': 0.5, 'f1': 0.5})
  assert json_eval.tree_scores({}, GOLD)['f1'] == 0.0


def test_json_scores_and_pass_rate():
  ok = json_eval.json_scores(
    '```json\n' + '{"name": "A", "type": "city", "facts": []}' + '\n```',
    GOLD,
    pages.SCHEMA,
  )
  assert ok['valid'] == 1.0 and ok['passed'] == 1.0
  assert ok['precision'] == pytest.approx(2 / 3) and ok['recall'] == 0.5
  bad = json_eval.json_scores('{"name": "A"', GOLD, pages.SCHEMA)
  assert bad == {
    'precision': 0.0,
    'recall': 0.0,
    'f1': 0.0,
    'valid': 0.0,
    'passed': 0.0,
  }
  nonconf = json_eval.json_scores(
    '{"name": 3, "type": "c", "facts": []}', GOLD, pages.SCHEMA
  )
  assert nonconf['valid'] == 1.0 and nonconf['passed'] == 0.0


def test_validate_names_violations():
  errs = json_eval.validate(
    {'name': 'A', 'facts': [{'relation': 1}], 'z': 0}, pages.SCHEMA
  )
  assert errs == [
    "$.facts[0].relation: 1 is not of type 'string'",
    "$.facts[0]: 'value' is a required property",
    "$: 'type' is a required property",
    "$: Additional properties are not allowed ('z' was unexpected)",
  ]


def test_full_json_schema_through_jsonschema():
  # Keywords beyond a hand-written subset: pattern, minimum, $ref/$defs.
  schema = {
    '$defs': {'pos': {'type': 'integer', 'minimum': 1}},
    'type': 'object',
    'properties': {'id': {'type': 'string', 'pattern': '^[a-z]+$'},
                   'n': {'$ref': '#/$defs/pos'}},
  }  # fmt: skip
  json_eval.check_schema(schema)
  assert json_eval.validate({'id': 'abc', 'n': 2}, schema) == []
  assert json_eval.validate({'id': 'A1', 'n': 0}, schema) == [
    "$.id: 'A1' does not match '^[a-z]+$'",
    '$.n: 0 is less than the minimum of 1',
  ]
  out = json_eval.json_scores('{"id": "A1", "n": 2}', {'id': 'A1'}, schema)
  assert out['valid'] == 1.0 and out['passed'] == 0.0 and out['f1'] < 1.0


@pytest.mark.parametrize(
  'schema,where',
  [
    ({'type': 'strin'}, '$.type'),
    ({'type': 'object', 'required': 'name'}, '$.required'),
    ({'properties': {'a': {'type': 'wrong'}}}, '$.properties.a.type'),
    ([1, 2], '$'),
    ({'type': 'array', 'items': 3}, '$.items'),
  ],
)
def test_invalid_schema_is_refused(schema, where):
  with pytest.raises(
    json_eval.SchemaError, match=where.replace('$', r'\$').replace('[', r'\[')
  ):
    json_eval.check_schema(schema)


def test_invalid_schema_error_names_value_and_allowed():
  with pytest.raises(json_eval.SchemaError, match=r"'strin'.*allowed: one of"):
    json_eval.check_schema({'type': 'strin'})


def test_the_page_schema_is_valid():
  json_eval.check_schema(pages.SCHEMA)
