"""The synthesised datasets as a tfds builder (array_record, no TensorFlow).

`ReaderLMSynthesis` runs the rule Draft -> Refine -> Critique pipeline over
the synthetic pages of one config (knowledge world + `PageConfig` +
drafter + seed) and writes six splits: `sft_filtered`, `sft_critique`,
`dpo` (`pipeline.datasets`, both tasks) and `pages_train`, `pages_test`
(HTML, gold Markdown, gold JSON as text). Records keep generation order,
so the seed fixes them exactly. `load(data_dir, seed=..., ...)` prepares
(once) and returns Python dicts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from typing import Any

import tensorflow_datasets as tfds

from common import synthetic
from common.synthetic import tfds_builders
from readerlm import backends
from readerlm import pages as pages_lib
from readerlm import pipeline

SPLITS = ('sft_filtered', 'sft_critique', 'dpo', 'pages_train', 'pages_test')
_FIELDS = {
  'sft_filtered': ('id', 'task', 'prompt', 'response'),
  'sft_critique': ('id', 'task', 'prompt', 'response'),
  'dpo': ('id', 'task', 'prompt', 'chosen', 'rejected'),
  'pages_train': ('id', 'entity', 'html', 'markdown', 'json'),
  'pages_test': ('id', 'entity', 'html', 'markdown', 'json'),
}


@dataclasses.dataclass(eq=False)
class SynthesisConfig(tfds.core.BuilderConfig):
  """What to synthesise: world, pages, drafter and seed."""

  world: synthetic.KnowledgeWorldConfig = dataclasses.field(
    default_factory=synthetic.KnowledgeWorldConfig.tiny
  )
  pages: pages_lib.PageConfig = dataclasses.field(
    default_factory=pages_lib.PageConfig
  )
  drafter: str = 'html_to_markdown'
  seed: int = 0


def _name(world, pages, drafter, seed) -> str:
  blob = json.dumps(
    [dataclasses.asdict(world), dataclasses.asdict(pages), drafter, seed],
    sort_keys=True,
  )
  return f's{seed}_{hashlib.sha1(blob.encode()).hexdigest()[:10]}'


class ReaderLMSynthesis(tfds.core.GeneratorBasedBuilder):
  """SFT-Filtered, SFT-Critique, DPO and the pages they came from."""

  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [SynthesisConfig(name='tiny')]
  DEFAULT_CONFIG_NAME = 'tiny'

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    keys = sorted({k for v in _FIELDS.values() for k in v})
    return tfds.core.DatasetInfo(
      builder=self,
      description=__doc__,
      features=tfds.features.FeaturesDict({k: text for k in keys}),
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    c = self.builder_config
    world = synthetic.build_knowledge_world(c.world)
    split = pages_lib.build_pages(world, c.pages, seed=c.seed)
    with tempfile.TemporaryDirectory() as tmp:
      records = []
      for task in pipeline.TASKS:
        records = pipeline.synthesize(
          split['train'], backends.RuleDrafter(c.drafter),
          backends.RuleRefiner(), backends.RuleCritic(),
          os.path.join(tmp, 'records.jsonl'), task=task,
          schema=pages_lib.SCHEMA,
        )  # fmt: skip
    data = pipeline.datasets(records, seed=c.seed)
    data['pages_train'], data['pages_test'] = split['train'], split['test']
    return {s: self._generate_examples(s, data[s]) for s in SPLITS}

  def _generate_examples(self, split, rows):
    keys = sorted(self.info.features)
    for i, row in enumerate(rows):
      ex = {k: '' for k in keys}
      for k in _FIELDS[split]:
        v = row[k]
        ex[k] = v if isinstance(v, str) else json.dumps(v)
      yield f'{split}_{i:06d}', ex


def load(
  data_dir: str | os.PathLike,
  world: synthetic.KnowledgeWorldConfig | None = None,
  pages: pages_lib.PageConfig | None = None,
  drafter: str = 'html_to_markdown',
  seed: int = 0,
) -> dict[str, list[dict[str, Any]]]:
  """Prepares the dataset (once per config) and returns every split.

  Each record holds its split's fields (`_FIELDS`) as `str` (gold JSON as
  JSON text).
  """
  world = world or synthetic.KnowledgeWorldConfig.tiny(seed)
  pages = pages or pages_lib.PageConfig()
  cfg = SynthesisConfig(
    name=_name(world, pages, drafter, seed), world=world, pages=pages,
    drafter=drafter, seed=seed,
  )  # fmt: skip
  builder = ReaderLMSynthesis(
    data_dir=os.fspath(data_dir), config=cfg, file_format='array_record'
  )
  tfds_builders.prepare(builder)
  sources = builder.as_data_source()
  out = {}
  for s in SPLITS:
    rows = []
    for i in range(len(sources[s])):
      ex = sources[s][i]
      rows.append(
        {
          k: ex[k].decode('utf-8') if isinstance(ex[k], bytes) else ex[k]
          for k in _FIELDS[s]
        }
      )
    out[s] = rows
  return out
