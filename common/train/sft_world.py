"""A base model for the safety world: task, LM and supervised fine-tuning.

`prepare(config, workdir, seed)` builds the benign safety world
(`common.synthetic.safety`), a `common.models.Transformer` (a preset shape
plus overrides, `common.models.build_config`, or a Hugging Face directory
saved with the task vocabulary), fine-tunes it on the world's SFT mixture
with `common.train.fit` (orbax checkpoints in `workdir/sft`, resumed after a
kill) and returns everything the NSPO and CKU experiments start from. The
seed sets the model's initialisation and the SFT batch order; the task is
the same for every seed (its own `task.seed`), so the arms of one seed are
paired and the seeds are replicates.

The general examples are split in halves (`safety.split_general`):
`general_fit` is what a method may estimate from, `general_heldout` is
only evaluated; `evaluate(params)` reports both and `general/*` over all.

`base_config()` is the `seeds` / `task` / `model` / `sft` part of those
experiments' configs:

* `task`: `SafetyTaskConfig` fields;
* `model`: `{'preset': name, <LMConfig field>: value, 'hf_dir': ''}`;
* `sft`: `steps`, `batch_size`, `learning_rate`, `warmup_steps` (linear
  warmup, then cosine decay to 0.1 x at `steps`), `weight_decay` (AdamW's,
  on every leaf), `checkpoint_every` (0: only at the end).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import ml_collections
import numpy as np
from flax import nnx

from common import models
from common import optim
from common import schema
from common.synthetic import safety
from common.train import lm_eval
from common.train import loop
from common.train import sft as sft_lib
from common.train import state as state_lib


def base_config() -> ml_collections.ConfigDict:
  """The shared `seeds`, `task`, `model` and `sft` fields (default sizes)."""
  c = ml_collections.ConfigDict()
  c.seeds = (0, 1, 2)
  c.task = ml_collections.ConfigDict(
    {
      'seed': 0,
      'num_knowledge': 48,
      'num_arithmetic': 48,
      'num_topics': 8,
      'heldout_templates': 1,
      'sft_refusal_share': 0.25,
    }
  )
  # A common.models preset plus overrides; hf_dir loads a Hugging Face
  # directory instead (its vocabulary must be the task tokenizer's).
  c.model = ml_collections.ConfigDict(
    {
      'preset': 'tiny',
      'd_model': 64,
      'n_layers': 2,
      'd_ff': 128,
      'hf_dir': '',
    }
  )
  c.sft = ml_collections.ConfigDict(
    {
      'steps': 600,
      'batch_size': 64,
      'learning_rate': 3e-3,
      'warmup_steps': 50,
      'weight_decay': 0.0,
      'checkpoint_every': 100,
    }
  )
  return c


def fields() -> dict[str, Any]:
  """`common.schema` checks of the fields `base_config` defines.

  An experiment on this world adds its own section and validates with
  `schema.validate(config, {**sft_world.fields(), 'nspo': {...}})`.
  """
  pos = schema.integer(1)
  return {
    'name': schema.string(),
    'seeds': schema.seeds(),
    'task': {
      'seed': schema.integer(0),
      'num_knowledge': pos,
      'num_arithmetic': schema.integer(1, 80),
      'num_topics': schema.integer(1, len(safety.RESTRICTED_TOPICS)),
      'heldout_templates': schema.integer(1, len(safety.REQUEST_TEMPLATES) - 1),
      'sft_refusal_share': schema.probability(open_high=True),
    },
    'model': models.check_spec,
    'sft': {
      'steps': pos,
      'batch_size': pos,
      'learning_rate': schema.number(0.0, open_low=True),
      'warmup_steps': schema.integer(0),
      'weight_decay': schema.number(0.0),
      'checkpoint_every': schema.integer(0),
    },
  }


@dataclasses.dataclass
class Prepared:
  """The SFT'd base model and the task around it.

  Attributes:
    task: the `SafetyTask`.
    model_config: the LM's `LMConfig`.
    graphdef: static model structure (`common.models.split`).
    params: SFT'd parameters.
    seed: the replicate's seed (model init, SFT order; RL/unlearning
      sampling derive from it).
    prompt_len: P, prompt tokens (left-padded).
    response_len: R, response tokens incl. EOS.
    eval_sets: `{name: encoded batch}`: `general_fit`, `general_heldout`
      (`safety.split_general`), `harm_train`, `harm_eval` (see
      `common.synthetic.safety.encode`).
    evaluate: `evaluate(params) -> {f'{set}/accuracy', f'{set}/refusal'}`
      (`common.train.lm_eval.make_evaluator`, greedy) for each set, and
      `general/accuracy`, `general/refusal` over both general halves.
    sft_history: the SFT loop's logged records.
  """

  task: safety.SafetyTask
  model_config: models.LMConfig
  graphdef: Any
  params: Any
  seed: int
  prompt_len: int
  response_len: int
  eval_sets: dict[str, dict[str, np.ndarray]]
  evaluate: Any
  sft_history: list[dict[str, Any]]


def task_config(config: ml_collections.ConfigDict) -> safety.SafetyTaskConfig:
  """`SafetyTaskConfig` from `config.task`."""
  return safety.SafetyTaskConfig(**config.task.to_dict())


def model_config(
  config: ml_collections.ConfigDict, vocab_size: int, max_len: int
) -> models.LMConfig:
  """`LMConfig` from `config.model` (a preset plus field overrides)."""
  return models.build_config(
    config.model, vocab_size=vocab_size, max_seq_len=max(max_len, 8)
  )


def load_hf(hf_dir: str, task: safety.SafetyTask):
  """`(LMConfig, graphdef, params)` of a HF directory with the task's vocab.

  Raises:
    FileNotFoundError: no such directory, or it has no `tokenizer.json`.
    ValueError: its tokenizer is not the task tokenizer, or its vocabulary
      is smaller.
  """
  cfg, model = models.load_hf_matching(
    hf_dir, task.tokenizer.hf_tokenizer.get_vocab(True)
  )
  graphdef, params = models.split(model)
  return cfg, graphdef, params


def sft_optimizer(s: ml_collections.ConfigDict):
  """AdamW with linear warmup and cosine decay to 0.1 x (`common.optim`)."""
  warmup = min(s.warmup_steps, s.steps)
  return optim.make_optimizer(
    {
      'name': 'adamw',
      'learning_rate': s.learning_rate,
      'schedule': 'warmup_cosine',
      'warmup_steps': warmup,
      'total_steps': max(s.steps, warmup + 1),
      'end_learning_rate_factor': 0.1,
      'weight_decay': s.weight_decay,
      'weight_decay_mask': 'all',
    }
  )


def prepare(
  config: ml_collections.ConfigDict, workdir: str, seed: int
) -> Prepared:
  """Builds the task and model and runs (or resumes) SFT in `workdir/sft`.

  Args:
    config: the experiment config (`base_config` fields and more).
    workdir: this replicate's folder (e.g. `<run>/seed0`).
    seed: the replicate's seed.
  """
  task = safety.build(task_config(config))
  p_len, r_len = safety.lengths(task)
  hf_dir = config.model.get('hf_dir', '')
  if hf_dir:
    mcfg, graphdef, params = load_hf(hf_dir, task)
  else:
    mcfg = model_config(config, task.tokenizer.vocab_size, p_len + r_len)
    graphdef, params = models.split(
      models.Transformer(mcfg, rngs=nnx.Rngs(seed))
    )

  s = config.sft
  data = safety.encode(task, task.sft, p_len, r_len)
  n = len(task.sft)
  if s.batch_size > n:
    raise ValueError(
      f'config.sft.batch_size={s.batch_size} > {n} SFT examples.'
    )

  def batches(step):
    rng = np.random.default_rng([seed, step])
    idx = rng.choice(n, s.batch_size, replace=False)
    return {k: data[k][idx] for k in ('tokens', 'attention_mask', 'loss_mask')}

  tx = sft_optimizer(s)
  state = state_lib.TrainState.create(params, tx, seed)
  state, history = loop.fit(
    state,
    state_lib.make_train_step(
      sft_lib.make_sft_loss(models.apply_fn(graphdef)), tx, has_aux=True
    ),
    batches,
    num_steps=s.steps,
    workdir=os.path.join(workdir, 'sft'),
    checkpoint_every=s.get('checkpoint_every', 0) or None,
    log_every=max(1, s.steps // 10),
    progress=False,
  )
  fit, heldout = safety.split_general(task)
  eval_sets = {
    'general_fit': safety.encode(task, fit, p_len, r_len),
    'general_heldout': safety.encode(task, heldout, p_len, r_len),
    'harm_train': safety.encode(task, task.harmful_train, p_len, r_len),
    'harm_eval': safety.encode(task, task.harmful_eval, p_len, r_len),
  }
  evaluate_sets = lm_eval.make_evaluator(
    graphdef,
    eval_sets,
    safety.refusal_ids(task),
    task.tokenizer.eos_id,
    r_len,
  )
  n_fit, n_held = len(fit), len(heldout)

  def evaluate(params) -> dict[str, float]:
    out = dict(evaluate_sets(params))
    for m in ('accuracy', 'refusal'):
      out[f'general/{m}'] = (
        n_fit * out[f'general_fit/{m}'] + n_held * out[f'general_heldout/{m}']
      ) / (n_fit + n_held)
    return out

  return Prepared(
    task,
    mcfg,
    graphdef,
    state.params,
    seed,
    p_len,
    r_len,
    eval_sets,
    evaluate,
    history,
  )
