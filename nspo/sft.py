"""The base model of the NSPO and CKU experiments: task, LM and SFT.

`prepare(config, workdir)` builds the benign safety task
(`safety_data`), a `common.models.Transformer` (from a preset shape, or
loaded from a Hugging Face directory), fine-tunes it on the SFT mixture
with `common.train.fit` (orbax checkpoints in `workdir/sft`, resumed if
present) and returns everything the experiments need.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
import tokenizers
from flax import nnx

from common import models
from common import train
from nspo import lm
from nspo import safety_data
from nspo import targets as targets_lib


@dataclasses.dataclass
class Prepared:
  """The SFT'd base model and the task around it.

  Attributes:
    task: the `SafetyTask`.
    model_config: the LM's `LMConfig`.
    model_def: static model structure (see `lm.init_model`).
    params: SFT'd parameters.
    prompt_len: P, prompt tokens (left-padded).
    response_len: R, response tokens incl. EOS.
    eval_sets: `{name: encoded batch}`: `general`, `harm_train`,
      `harm_eval`.
    evaluate: `evaluate(params) -> {f'{set}/accuracy', f'{set}/refusal'}`.
    sft_history: the SFT loop's logged records.
  """

  task: safety_data.SafetyTask
  model_config: models.LMConfig
  model_def: Any
  params: Any
  prompt_len: int
  response_len: int
  eval_sets: dict[str, dict[str, np.ndarray]]
  evaluate: Any
  sft_history: list[dict[str, Any]]


def task_config(config: ml_collections.ConfigDict):
  return safety_data.SafetyTaskConfig(**config.task.to_dict())


def model_config(
  config: ml_collections.ConfigDict, vocab_size: int, max_len: int
) -> models.LMConfig:
  """LMConfig from `config.model`: a preset name plus field overrides."""
  m = config.model.to_dict()
  preset = m.pop('preset')
  m.pop('hf_dir', None)
  return models.get_preset(
    preset, vocab_size=vocab_size, max_seq_len=max(max_len, 8), **m
  )


def frozen_mask(params: Any, trainable: str) -> Any:
  """Pytree of bools: True for leaves whose path does not match `trainable`."""
  regex = re.compile(trainable)
  mask = jax.tree_util.tree_map_with_path(
    lambda p, _: regex.search(targets_lib.path_str(p)) is None, params
  )
  if all(jax.tree.leaves(mask)):
    raise ValueError(
      f'trainable pattern {trainable!r} matches no parameter; paths look '
      f'like {targets_lib.leaf_paths(params)[:4]}.'
    )
  return mask


def _load_hf(hf_dir: str, task: safety_data.SafetyTask):
  """Loads a HF directory whose vocabulary is the task tokenizer's."""
  if not os.path.isdir(hf_dir):
    raise FileNotFoundError(f'config.model.hf_dir {hf_dir!r} does not exist.')
  tok_path = os.path.join(hf_dir, 'tokenizer.json')
  if not os.path.isfile(tok_path):
    raise FileNotFoundError(
      f'{tok_path} is missing; the directory must hold the task tokenizer '
      '(WordTokenizer.save) so token ids mean the same words.'
    )
  theirs = tokenizers.Tokenizer.from_file(tok_path).get_vocab(True)
  ours = task.tokenizer.hf_tokenizer.get_vocab(True)
  if theirs != ours:
    differ = sorted(set(theirs.items()) ^ set(ours.items()))[:5]
    raise ValueError(
      f'the tokenizer in {hf_dir!r} is not the task tokenizer (e.g. '
      f'{differ}); the synthetic task needs its own word vocabulary, so '
      'save the model with `task.tokenizer.save(dir)`.'
    )
  cfg, model = models.load_hf(hf_dir)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return cfg, (graphdef, rest), params


def prepare(config: ml_collections.ConfigDict, workdir: str) -> Prepared:
  """Builds the task and model and runs (or resumes) SFT."""
  task = safety_data.build(task_config(config))
  p_len, r_len = safety_data.lengths(task)
  hf_dir = config.model.get('hf_dir', '')
  if hf_dir:
    mcfg, mdef, params = _load_hf(hf_dir, task)
    if mcfg.vocab_size < task.tokenizer.vocab_size:
      raise ValueError(
        f'the model in {hf_dir!r} has vocab_size {mcfg.vocab_size} < the '
        f"task tokenizer's {task.tokenizer.vocab_size}; save the model "
        'with the task tokenizer (WordTokenizer) vocabulary.'
      )
  else:
    mcfg = model_config(config, task.tokenizer.vocab_size, p_len + r_len)
    mdef, params = lm.init_model(mcfg, config.seed)

  s = config.sft
  data = safety_data.encode(task, task.sft, p_len, r_len)
  n = len(task.sft)
  if s.batch_size > n:
    raise ValueError(
      f'config.sft.batch_size={s.batch_size} > {n} SFT examples.'
    )

  def batches(step):
    rng = np.random.default_rng([config.seed, step])
    idx = rng.choice(n, s.batch_size, replace=False)
    return {k: data[k][idx] for k in ('tokens', 'attention_mask', 'loss_mask')}

  sched = optax.warmup_cosine_decay_schedule(
    0.0, s.lr, min(s.warmup, s.steps), max(s.steps, 1), s.lr * 0.1
  )
  tx = optax.adamw(sched, weight_decay=s.weight_decay)
  state = train.TrainState.create(params, tx, config.seed)
  state, history = train.fit(
    state,
    train.make_train_step(lm.sft_loss(mdef), tx, has_aux=True),
    batches,
    num_steps=s.steps,
    workdir=os.path.join(workdir, 'sft'),
    log_every=max(1, s.steps // 10),
    progress=False,
  )
  eval_sets = {
    'general': safety_data.encode(task, task.general, p_len, r_len),
    'harm_train': safety_data.encode(task, task.harmful_train, p_len, r_len),
    'harm_eval': safety_data.encode(task, task.harmful_eval, p_len, r_len),
  }
  evaluate = lm.make_evaluator(
    mdef,
    eval_sets,
    safety_data.refusal_ids(task),
    task.tokenizer.eos_id,
    r_len,
  )
  return Prepared(
    task,
    mcfg,
    mdef,
    state.params,
    p_len,
    r_len,
    eval_sets,
    evaluate,
    history,
  )
