"""tfds builders for the embedded worlds (array_record; no TensorFlow needed).

Three `tfds.core.GeneratorBasedBuilder`s, each with `tiny` and `default`
configs and any custom config (`load(name, data_dir, seed=3, ...)`):

* `knowledge_world_qa`: questions, splits `train`, `test`,
  `compositional`.
* `knowledge_world_corpus`: the retrieval corpus, split `corpus`.
* `arithmetic_tasks`: arithmetic problems, splits `train`, `test`.

Files are written with `file_format='array_record'` and read back with
`builder.as_data_source()`, neither of which imports TensorFlow. Records
keep generation order (`disable_shuffling`), so a seed fixes them exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import tqdm_utils

from common.synthetic import arithmetic
from common.synthetic import knowledge_world as kw
from common.synthetic import traces

_VERSION = tfds.core.Version('1.0.0')
_FILE_FORMAT = 'array_record'


def prepare(builder: tfds.core.DatasetBuilder) -> None:
  """`builder.download_and_prepare()` without tfds' console noise.

  The project's builders generate their data (nothing is downloaded), so
  tfds' "Downloading and preparing dataset Unknown size ..." line and its
  split / shuffle progress bars (which leave `[A` escape codes in logs) say
  nothing true: both are suppressed. tfds' absl log lines (which folder was
  generated) stay. Every package's tfds builder is prepared through this.
  """
  was_shown = tqdm_utils._active  # tfds keeps no getter for it
  tqdm_utils.display_progress_bar(False)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      builder.download_and_prepare()
  finally:
    tqdm_utils.display_progress_bar(was_shown)


@dataclasses.dataclass(eq=False)
class KnowledgeWorldBuilderConfig(tfds.core.BuilderConfig):
  """A tfds config carrying a `KnowledgeWorldConfig`."""

  world: kw.KnowledgeWorldConfig = dataclasses.field(
    default_factory=kw.KnowledgeWorldConfig
  )


@dataclasses.dataclass(eq=False)
class ArithmeticBuilderConfig(tfds.core.BuilderConfig):
  """A tfds config carrying an `ArithmeticConfig`."""

  task: arithmetic.ArithmeticConfig = dataclasses.field(
    default_factory=arithmetic.ArithmeticConfig
  )


_WORLD_PRESETS = {
  'tiny': kw.KnowledgeWorldConfig.tiny(),
  'default': kw.KnowledgeWorldConfig(),
}
_ARITH_PRESETS = {
  'tiny': arithmetic.ArithmeticConfig.tiny(),
  'default': arithmetic.ArithmeticConfig(),
}


def config_name(cfg, presets: dict) -> str:
  """The preset's name, or `s<seed>_<hash>` for a custom config."""
  for name, preset in presets.items():
    if cfg == preset:
      return name
  blob = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
  return f's{cfg.seed}_{hashlib.sha1(blob.encode()).hexdigest()[:10]}'


def _metadata(cfg) -> tfds.core.MetadataDict:
  meta = tfds.core.MetadataDict()
  meta['config'] = json.loads(json.dumps(dataclasses.asdict(cfg)))
  return meta


class KnowledgeWorldQA(tfds.core.GeneratorBasedBuilder):
  """Multi-hop questions with golden decompositions."""

  VERSION = _VERSION
  BUILDER_CONFIGS = [
    KnowledgeWorldBuilderConfig(name=n, world=c)
    for n, c in _WORLD_PRESETS.items()
  ]
  DEFAULT_CONFIG_NAME = 'tiny'

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return tfds.core.DatasetInfo(
      builder=self,
      description=kw.__doc__,
      features=tfds.features.FeaturesDict(
        {
          'id': text,
          'question': text,
          'golden_answers': tfds.features.Sequence(text),
          'hops': tfds.features.Scalar(np.int32),
          'decomposition': tfds.features.Sequence(
            {'query': text, 'answer': text, 'doc_id': text, 'subject': text}
          ),
          'relations': tfds.features.Sequence(text),
          'entities': tfds.features.Sequence(text),
        }
      ),
      metadata=_metadata(self.builder_config.world),
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    world = kw.build_knowledge_world(self.builder_config.world)
    return {s: self._generate_examples(world.split(s)) for s in kw.SPLITS}

  def _generate_examples(self, questions):
    for q in questions:
      yield q['id'], {k: q[k] for k in self.info.features}


class KnowledgeWorldCorpus(tfds.core.GeneratorBasedBuilder):
  """The knowledge world's document corpus (`{"id", "contents"}`)."""

  VERSION = _VERSION
  BUILDER_CONFIGS = [
    KnowledgeWorldBuilderConfig(name=n, world=c)
    for n, c in _WORLD_PRESETS.items()
  ]
  DEFAULT_CONFIG_NAME = 'tiny'

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return tfds.core.DatasetInfo(
      builder=self,
      description='Documents of the knowledge world (Search-R1 format).',
      features=tfds.features.FeaturesDict({'id': text, 'contents': text}),
      metadata=_metadata(self.builder_config.world),
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    world = kw.build_knowledge_world(self.builder_config.world)
    return {'corpus': self._generate_examples(world.documents)}

  def _generate_examples(self, documents):
    for d in documents:
      yield d['id'], d


class ArithmeticTasks(tfds.core.GeneratorBasedBuilder):
  """Multi-step integer arithmetic with direct and calculator targets."""

  VERSION = _VERSION
  BUILDER_CONFIGS = [
    ArithmeticBuilderConfig(name=n, task=c) for n, c in _ARITH_PRESETS.items()
  ]
  DEFAULT_CONFIG_NAME = 'tiny'

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return tfds.core.DatasetInfo(
      builder=self,
      description=arithmetic.__doc__,
      features=tfds.features.FeaturesDict(
        {
          'id': text,
          'question': text,
          'expression': text,
          'answer': tfds.features.Scalar(np.int64),
          'num_operands': tfds.features.Scalar(np.int32),
          'steps': tfds.features.Sequence(
            {'expression': text, 'result': tfds.features.Scalar(np.int64)}
          ),
          'direct_target': text,
          'tool_target': text,
        }
      ),
      metadata=_metadata(self.builder_config.task),
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    problems = arithmetic.make_problems(self.builder_config.task)
    return {s: self._generate_examples(problems[s]) for s in arithmetic.SPLITS}

  def _generate_examples(self, problems):
    for p in problems:
      yield (
        p.id,
        {
          'id': p.id,
          'question': p.question,
          'expression': p.expression,
          'answer': p.answer,
          'num_operands': p.num_operands,
          'steps': [{'expression': e, 'result': r} for e, r in p.steps],
          'direct_target': traces.arithmetic_direct_trace(p),
          'tool_target': traces.arithmetic_tool_trace(p),
        },
      )


# name -> (builder class, builder-config class, config field, task config
# class, presets)
BUILDERS = {
  'knowledge_world_qa': (
    KnowledgeWorldQA, KnowledgeWorldBuilderConfig, 'world',
    kw.KnowledgeWorldConfig, _WORLD_PRESETS,
  ),
  'knowledge_world_corpus': (
    KnowledgeWorldCorpus, KnowledgeWorldBuilderConfig, 'world',
    kw.KnowledgeWorldConfig, _WORLD_PRESETS,
  ),
  'arithmetic_tasks': (
    ArithmeticTasks, ArithmeticBuilderConfig, 'task',
    arithmetic.ArithmeticConfig, _ARITH_PRESETS,
  ),
}  # fmt: skip


def get_builder(
  name: str, data_dir: str | os.PathLike, preset: str = 'tiny', **overrides
) -> tfds.core.GeneratorBasedBuilder:
  """A builder for `name` with a preset config plus field overrides.

  Args:
    name: one of `BUILDERS`.
    data_dir: where tfds keeps the prepared files.
    preset: `tiny` or `default`.
    **overrides: fields of the task config (`KnowledgeWorldConfig` or
      `ArithmeticConfig`), e.g. `seed=3, num_entities=200`.

  Returns:
    The (not yet prepared) builder.
  """
  if name not in BUILDERS:
    raise ValueError(f'unknown dataset {name!r}; known: {sorted(BUILDERS)}')
  cls, cfg_cls, field, task_cls, presets = BUILDERS[name]
  if preset not in presets:
    raise ValueError(f'unknown preset {preset!r}; known: {sorted(presets)}')
  allowed = {f.name for f in dataclasses.fields(task_cls)}
  unknown = sorted(set(overrides) - allowed)
  if unknown:
    raise ValueError(
      f'unknown {task_cls.__name__} fields {unknown}; allowed: '
      f'{sorted(allowed)}'
    )
  task = dataclasses.replace(presets[preset], **overrides)
  cfg_name = config_name(task, presets)
  cfg = cfg_name if cfg_name in presets else cfg_cls(cfg_name, **{field: task})
  return cls(data_dir=os.fspath(data_dir), config=cfg, file_format=_FILE_FORMAT)


def _to_python(value: Any) -> Any:
  if isinstance(value, bytes):
    return value.decode('utf-8')
  if isinstance(value, np.ndarray):
    return [_to_python(v) for v in value.tolist()]
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, list):
    return [_to_python(v) for v in value]
  if isinstance(value, dict):
    return {k: _to_python(v) for k, v in value.items()}
  return value


def _record(example: dict, feature_dict) -> dict:
  """Decodes bytes to str and sequences of dicts back to lists of dicts."""
  out = {}
  for key, value in example.items():
    value = _to_python(value)
    feature = feature_dict[key]
    if isinstance(feature, tfds.features.Sequence) and isinstance(value, dict):
      n = len(next(iter(value.values()))) if value else 0
      value = [{k: v[i] for k, v in value.items()} for i in range(n)]
    out[key] = value
  return out


def load(
  name: str,
  data_dir: str | os.PathLike,
  split: str | None = None,
  preset: str = 'tiny',
  **overrides,
) -> dict[str, list[dict]] | list[dict]:
  """Builds the dataset if needed and returns its records as Python dicts.

  Args:
    name: `knowledge_world_qa`, `knowledge_world_corpus` or
      `arithmetic_tasks`.
    data_dir: tfds data directory (prepared files are reused).
    split: one split, or None for all.
    preset: `tiny` or `default`.
    **overrides: task-config fields (see `get_builder`).

  Returns:
    `{split: [record, ...]}`, or the list of one split. Text is `str`,
    numbers are `int`, and sequences of dicts (`decomposition`, `steps`)
    are lists of dicts, as in the generators.
  """
  builder = get_builder(name, data_dir, preset, **overrides)
  prepare(builder)
  sources = builder.as_data_source()
  if split is not None and split not in sources:
    raise ValueError(f'{name} has no split {split!r}; has {sorted(sources)}')
  features = builder.info.features
  wanted = [split] if split is not None else sorted(sources)
  out = {
    s: [_record(sources[s][i], features) for i in range(len(sources[s]))]
    for s in wanted
  }
  return out[split] if split is not None else out
