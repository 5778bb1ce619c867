"""What every PiCA stage shares: world, tokenizer, retriever, model, sampler.

`Context(config)` builds, once per run, the knowledge world with its
tokenizer and BM25 retriever, the policy's architecture (`graphdef`, the
initial `params`, `apply_fn` = `common.models.apply_fn`), the training mesh
and the one KV-cache `Sampler` that every stage and arm reuses
(`rollout(params, ...)` swaps the parameters in; the sampler's jitted
steps are module-level, so nothing recompiles between stages or arms).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
from flax import nnx

from common import models
from common import retrieval as retriever_lib
from common import sampling
from common import synthetic
from common import train
from common.rl import qa_rewards
from pica import hazard
from pica import rollout as rollout_lib

PLACEHOLDER = '<step>'


def prompt(question) -> str:
  """The Search-R1 prompt of a knowledge-world question."""
  return synthetic.search_prompt(question['question'], instruction=False)


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


class Context:
  """World, tokenizer, retriever, model, mesh and sampler of one run.

  Args:
    config: a config checked by `pica.config.resolve`.
    mesh: the training mesh (default: `common.train.make_mesh()`, every
      device on `'data'`); every training batch must split over it.
    seed: the training seed (model init, sampling keys, data order;
      default `config.seed`). The world always comes from `config.seed`,
      so the runs of `config.seeds` are paired on one world.

  Raises:
    ValueError: the model or the rollout budget cannot hold a golden
      trace, too few train questions, or a batch that does not split over
      the mesh (each names the field).
  """

  def __init__(
    self, config: ml_collections.ConfigDict, mesh=None, seed: int | None = None
  ):
    self.config = config
    self.seed = config.seed if seed is None else seed
    self.world = synthetic.build_knowledge_world(
      synthetic.KnowledgeWorldConfig(seed=config.seed, **config.world)
    )
    self.tok = synthetic.build_tokenizer(
      self.world, extra_tokens=(PLACEHOLDER,)
    )
    self.placeholder_id = self.tok.token_id(PLACEHOLDER)
    self.retriever = retriever_lib.BM25Retriever(self.world.documents)
    self.rollout_cfg = rollout_lib.RolloutConfig(**config.rollout)
    self.prompt_len = config.max_prompt_len
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
      raise ValueError(
        f'model.max_seq_len {self.lm_config.max_seq_len} < {need} needed '
        '(prompt + response + placeholders)'
      )
    if self.rollout_cfg.max_turns < self.world.config.max_hops:
      raise ValueError(
        f'rollout.max_turns={self.rollout_cfg.max_turns} < world max_hops='
        f'{self.world.config.max_hops}: golden traces would not fit'
      )
    self.train_qs = self.world.split('train')
    self.mesh = train.make_mesh() if mesh is None else mesh
    self._check_sizes()
    model = models.Transformer(self.lm_config, rngs=nnx.Rngs(self.seed))
    self.graphdef, self.init_params = models.split(model)
    self.apply_fn = models.apply_fn(self.graphdef)
    self.sampler = sampling.Sampler(
      model, capacity=self.rollout_cfg.capacity(self.prompt_len)
    )
    self.key = jax.random.key(self.seed)

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
      [prompt(q) for q in questions],
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
      self.tok.unk_id,
    )
