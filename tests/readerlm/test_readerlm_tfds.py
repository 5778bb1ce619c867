"""The synthesis datasets as a tfds builder: deterministic, same as JSONL."""

import json

from common import synthetic
from readerlm import backends
from readerlm import pages as pages_lib
from readerlm import pipeline
from readerlm import tfds_builder


def test_builder_matches_the_pipeline_and_is_deterministic(tmp_path):
  world = synthetic.KnowledgeWorldConfig.tiny(0)
  pc = pages_lib.PageConfig(max_pages=10)
  got = tfds_builder.load(tmp_path / 'a', world, pc, seed=0)
  again = tfds_builder.load(tmp_path / 'b', world, pc, seed=0)
  assert got == again
  split = pages_lib.build_pages(
    synthetic.build_knowledge_world(world), pc, seed=0
  )
  recs = []
  for task in pipeline.TASKS:
    recs = pipeline.synthesize(
      split['train'], backends.RuleDrafter(), backends.RuleRefiner(),
      backends.RuleCritic(), tmp_path / 'r.jsonl', task=task,
      schema=pages_lib.SCHEMA,
    )  # fmt: skip
  data = pipeline.datasets(recs, seed=0)
  assert [r['response'] for r in got['sft_filtered']] == [
    r['response'] for r in data['sft_filtered']
  ]
  assert len(got['dpo']) == len(data['dpo']) > 0
  assert json.loads(got['pages_test'][0]['json']) == split['test'][0]['json']
