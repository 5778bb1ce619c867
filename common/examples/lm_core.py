"""lm_core: SFT then GRPO of a tiny LM on the knowledge world's 1-hop QA.

The core experiment the LM papers build on, end to end with the shared
pieces: the seeded knowledge world (`common.synthetic`), the word
tokenizer, the NNX decoder (`common.models`), the resumable training loop
(`common.train.fit` with `sft`), the KV-cache sampler and the GRPO trainer
on the on-policy loop (`common.train.grpo`) with an exact-match reward.

Task: a 1-hop question with the top-k documents of a lexical retriever in
its prompt (the golden document always among them; the others are
look-alike distractors), answered as `<answer> X </answer>`. Train and test
use disjoint entities (the world's held-out split), so the model has to
read the documents rather than memorise facts.

Protocol, for each seed of `config.seeds` (its own model init, SFT order
and sampling; the world is the same): a short SFT warm start on the
labelled pool (the first `sft.num_demonstrations` train questions, with
their golden answers; `None`: all of them), so that the sampled reward is
above zero but far from solved; then from that checkpoint two arms with the
same budget (steps, learning rate, batch shape): GRPO, whose prompts come
from every train question since it needs only the verifier, and SFT
continued on the labelled pool. This is the setting RL is used for:
demonstrations are scarce, prompts with a checkable answer are not
(`default` labels 256 of 2218; with every question labelled, GRPO finds
no answer the continuation has not seen and does not beat it).
Greedy exact match is measured on held-out test questions and on training
questions, and pass@1 sampled at GRPO's temperature (`eval.samples` draws
per question) on the test questions after each arm; the report gives
GRPO minus each baseline as a paired bootstrap interval over seeds
(`common.stats`).
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from common import metrics as metrics_lib
from common import models
from common import optim
from common import report
from common import schema
from common import stats
from common import synthetic
from common import train
from common.models import LMConfig
from common.models import Transformer
from common.rl import qa_rewards
from common.sampling import sampler as sampler_lib
from common.train import grpo
from common.train import sft


def make_examples(
  world: synthetic.KnowledgeWorld, split: str, k: int
) -> list[dict[str, Any]]:
  """1-hop questions of `split` with a retrieval-augmented prompt.

  Returns:
    Dicts with `prompt` (top-`k` documents + question), `response` (the
    golden `<answer>`) and `golden_answers`.
  """
  index = synthetic.LexicalIndex(world.documents)
  by_id = world.document_by_id
  out = []
  for q in world.split(split):
    if q['hops'] != 1:
      continue
    docs = index.search(q['question'], k)
    gold = q['decomposition'][0]['doc_id']
    if all(d['id'] != gold for d in docs):
      docs = docs[:-1] + [by_id[gold]]  # keep it answerable
    prompt = (
      synthetic.traces.information_block(docs)
      + '\n'
      + synthetic.search_prompt(q['question'], instruction=False)
    )
    answer = q['golden_answers'][0]
    out.append(
      {
        'prompt': prompt,
        'response': f'<answer> {answer} </answer>',
        'golden_answers': list(q['golden_answers']),
      }
    )
  if not out:
    raise ValueError(f'the world has no 1-hop questions in split {split!r}')
  return out


def exact_match_rate(
  sampler: sampler_lib.Sampler,
  params,
  tokenizer,
  examples: Sequence[dict],
  max_prompt_len: int,
  max_new_tokens: int,
  batch_size: int = 64,
  mesh: jax.sharding.Mesh | None = None,
  temperature: float = 0.0,
  samples: int = 1,
  seed: int = 0,
) -> float:
  """Exact match over `examples` (fraction in [0, 1]).

  `temperature=0` decodes greedily (`samples` must be 1). Otherwise each
  example is answered `samples` times at `temperature` and the rate is the
  mean over all of them: pass@1 estimated from `samples` draws, as RL
  papers report it (DeepSeek-R1 samples at 0.6).

  With a `mesh`, each batch of prompts is split over its batch axes
  (`batch_size` must divide by their size) and `params` should be
  replicated on it, so decoding is data-parallel.
  """
  if samples < 1 or (temperature == 0.0 and samples != 1):
    raise ValueError(
      f'samples={samples} at temperature={temperature}: greedy decoding '
      'takes samples=1; sampling takes samples >= 1'
    )
  sampler.update(params)
  cfg = sampler_lib.GenerationConfig(
    max_new_tokens=max_new_tokens,
    temperature=temperature,
    eos_ids=(tokenizer.eos_id,),
    pad_id=tokenizer.pad_id,
  )
  examples = [e for e in examples for _ in range(samples)]
  scores = []
  for i in range(0, len(examples), batch_size):
    chunk = list(examples[i : i + batch_size])
    n = len(chunk)
    chunk += [chunk[-1]] * (batch_size - n)  # one compiled shape
    enc = tokenizer.encode_batch(
      [e['prompt'] for e in chunk], max_prompt_len, left_pad=True
    )
    ids, mask = enc.ids, enc.mask
    if mesh is not None:
      ids, mask = train.shard_batch((ids, mask), mesh)
    key = jax.random.fold_in(jax.random.key(seed), i)
    out = jax.device_get(sampler.sample(ids, mask, key, cfg))
    texts = [
      tokenizer.decode(t[m]) for t, m in zip(out.tokens, out.mask, strict=True)
    ]
    scores += qa_rewards.exact_match_reward(
      [e['prompt'] for e in chunk][:n],
      texts[:n],
      [e['golden_answers'] for e in chunk][:n],
    )
  return float(np.mean(scores))


def fields() -> dict[str, Any]:
  """`common.schema` checks of every field of the lm_core config."""
  pos = schema.integer(1)
  lr = schema.number(0.0, open_low=True)
  return {
    'name': schema.string(),
    'seeds': schema.seeds(),
    'world': schema.dataclass_kwargs(synthetic.KnowledgeWorldConfig),
    'top_k_docs': pos,
    'max_prompt_len': schema.integer(8),
    'max_new_tokens': pos,
    'model': models.check_spec,
    'sft': {
      'steps': pos,
      'batch_size': pos,
      'num_demonstrations': schema.optional(pos),
      'learning_rate': lr,
      'warmup_steps': schema.integer(0),
      'log_every': pos,
      'eval_every': pos,
    },
    'grpo': {
      **grpo.section_fields(),
      'log_every': pos,
      'eval_every': pos,
    },
    'eval': {'num_questions': pos, 'samples': pos},
    'checkpoint_every': pos,
  }


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks fields, types and ranges before any work.

  Raises:
    common.schema.ConfigError: naming the field, the value and what is
      allowed.
  """
  schema.validate(config, fields(), experiment='lm_core')
  if config.grpo.epsilon_high < config.grpo.epsilon:
    schema.fail(
      'grpo.epsilon_high',
      config.grpo.epsilon_high,
      f'a number >= grpo.epsilon={config.grpo.epsilon}',
    )


def _model_config(config, vocab_size: int) -> LMConfig:
  return models.build_config(config.model, vocab_size=vocab_size)


def _sft_optimizer(learning_rate, warmup_steps, total_steps):
  return optim.make_optimizer(
    {
      'name': 'adamw',
      'learning_rate': learning_rate,
      'schedule': 'warmup_cosine',
      'warmup_steps': warmup_steps,
      'total_steps': total_steps,
      'weight_decay': 0.0,
      'grad_clip_norm': 1.0,
    }
  )


def _adamw(learning_rate):
  """Constant-rate AdamW, clipped at norm 1 (GRPO and the continuation)."""
  return optim.make_optimizer(
    {
      'name': 'adamw',
      'learning_rate': learning_rate,
      'weight_decay': 0.0,
      'grad_clip_norm': 1.0,
    }
  )


def run_seed(
  config,
  workdir: pathlib.Path,
  seed: int,
  tokenizer,
  train_ex,
  evaluate,
  num_demos: int,
) -> dict[str, Any]:
  """SFT, then GRPO and the same-budget SFT continuation, for one seed.

  The first `num_demos` training questions are the labelled pool (prompt
  and golden answer): the SFT warm start and the continuation train on
  them. GRPO needs no demonstration, only the verifier, so its prompts come
  from every training question. Both arms start from the seed's SFT
  checkpoint with the same learning rate, steps and batch shape. Every
  loop resumes from `workdir`.
  """
  max_len = config.max_prompt_len + config.max_new_tokens
  model = Transformer(
    _model_config(config, tokenizer.vocab_size), rngs=nnx.Rngs(seed)
  )
  graphdef, params = models.split(model)
  apply_fn = models.apply_fn(graphdef)
  sft_loss = sft.make_sft_loss(apply_fn)

  def encode(idx):
    chosen = [train_ex[i] for i in idx]
    return sft.encode_sft(
      tokenizer,
      [e['prompt'] for e in chosen],
      [e['response'] for e in chosen],
      max_len,
    )

  # 1. SFT warm start.
  s = config.sft
  sft_tx = _sft_optimizer(s.learning_rate, s.warmup_steps, s.steps)
  state, sft_history = train.fit(
    train.TrainState.create(params, sft_tx, seed),
    train.make_train_step(sft_loss, sft_tx, has_aux=True),
    lambda step: encode(
      np.random.default_rng([seed, step]).choice(
        num_demos, s.batch_size, replace=False
      )
    ),
    num_steps=s.steps,
    workdir=workdir / 'sft',
    mesh=evaluate.mesh,
    checkpoint_every=config.checkpoint_every,
    log_every=s.log_every,
    eval_fn=lambda st: evaluate(st.params),
    eval_every=s.eval_every,
  )
  sft_params = state.params
  after_sft = evaluate(sft_params, sampled=True)

  g = config.grpo

  def prompt_ids(step: int, pool: int) -> np.ndarray:
    return np.random.default_rng([seed, 10**6 + step]).choice(
      pool, g.prompts_per_step, replace=False
    )

  # 2a. GRPO from the SFT checkpoint, exact-match reward.
  grpo_cfg = grpo.config_from_section(
    g,
    max_prompt_len=config.max_prompt_len,
    max_new_tokens=config.max_new_tokens,
    checkpoint_every=config.checkpoint_every,
    log_every=g.log_every,
    eval_every=g.eval_every,
    seed=seed,
  )
  trainer = grpo.GRPOTrainer(
    models.merge(graphdef, sft_params),
    tokenizer,
    _adamw(g.learning_rate),
    qa_rewards.exact_match_reward,
    grpo_cfg,
    mesh=evaluate.mesh,
  )

  def prompts(step: int):
    chosen = [train_ex[i] for i in prompt_ids(step, len(train_ex))]
    return [e['prompt'] for e in chosen], {
      'golden_answers': [e['golden_answers'] for e in chosen]
    }

  final, grpo_history = trainer.train(prompts, workdir / 'grpo', evaluate)
  after_grpo = evaluate(final.params, sampled=True)

  # 2b. The same budget as SFT: same prompts, steps and learning rate.
  more_tx = _adamw(g.learning_rate)
  more, more_history = train.fit(
    train.TrainState.create(sft_params, more_tx, seed),
    train.make_train_step(sft_loss, more_tx, has_aux=True),
    # GRPO's batch shape: each prompt G times (the same mean loss).
    lambda step: encode(
      np.repeat(prompt_ids(step, num_demos), g.num_generations)
    ),
    num_steps=g.steps,
    workdir=workdir / 'sft_more',
    mesh=evaluate.mesh,
    checkpoint_every=config.checkpoint_every,
    log_every=g.log_every,
    eval_fn=lambda st: evaluate(st.params),
    eval_every=g.eval_every,
  )
  after_more = evaluate(more.params, sampled=True)
  rewards = [h['reward_mean'] for h in grpo_history if 'reward_mean' in h]
  k = max(1, len(rewards) // 5)
  return {
    'after_sft': after_sft,
    'after_grpo': after_grpo,
    'after_sft_more': after_more,
    'reward_first': float(np.mean(rewards[:k])),
    'reward_last': float(np.mean(rewards[-k:])),
    'sft_history': sft_history,
    'grpo_history': grpo_history,
    'more_history': more_history,
  }


class _Evaluator:
  """Greedy exact match on the test questions and a train sample."""

  def __init__(self, config, tokenizer, eval_test, eval_train):
    self.config, self.tokenizer = config, tokenizer
    self.eval_test, self.eval_train = eval_test, eval_train
    self.mesh = train.make_mesh()  # batch on 'data' over every device
    # One sampler (and compilation) for every seed and arm.
    self.sampler = sampler_lib.Sampler(
      Transformer(
        _model_config(config, tokenizer.vocab_size), rngs=nnx.Rngs(0)
      ),
      capacity=config.max_prompt_len + config.max_new_tokens,
    )

  def __call__(self, params, sampled: bool = False) -> dict[str, float]:
    """Greedy test and train EM; with `sampled`, also the test pass@1 at
    GRPO's sampling temperature (`eval.samples` draws per question)."""
    kw = dict(
      max_prompt_len=self.config.max_prompt_len,
      max_new_tokens=self.config.max_new_tokens,
      mesh=self.mesh,
    )
    out = {
      'test_em': exact_match_rate(
        self.sampler, params, self.tokenizer, self.eval_test, **kw
      ),
      'train_em': exact_match_rate(
        self.sampler, params, self.tokenizer, self.eval_train, **kw
      ),
    }
    if sampled:
      out['test_sampled_em'] = exact_match_rate(
        self.sampler, params, self.tokenizer, self.eval_test, **kw,
        temperature=self.config.grpo.temperature,
        samples=self.config.eval.samples,
      )  # fmt: skip
    return out


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs every seed's SFT, GRPO and SFT continuation; writes metrics.json."""
  validate_config(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  watch = metrics_lib.Stopwatch()
  world = synthetic.build_knowledge_world(
    synthetic.KnowledgeWorldConfig(**config.world.to_dict())
  )
  tokenizer = synthetic.build_tokenizer(world)
  tokenizer.save(workdir / 'tokenizer')
  train_ex = make_examples(world, 'train', config.top_k_docs)
  test_ex = make_examples(world, 'test', config.top_k_docs)
  n = config.eval.num_questions
  eval_train = [
    train_ex[i]
    for i in np.random.default_rng(config.world.seed).permutation(
      len(train_ex)
    )[:n]
  ]
  num_demos = config.sft.num_demonstrations or len(train_ex)
  for field, need, have in (
    ('sft.num_demonstrations', num_demos, len(train_ex)),
    ('grpo.prompts_per_step', config.grpo.prompts_per_step, num_demos),
    ('sft.batch_size', config.sft.batch_size, num_demos),
  ):
    if need > have:
      schema.fail(
        field, need, f'at most {have} (the 1-hop train questions / demos)'
      )
  evaluate = _Evaluator(config, tokenizer, test_ex[:n], eval_train)
  runs = [
    run_seed(
      config, workdir / f'seed{s}', s, tokenizer, train_ex, evaluate, num_demos
    )
    for s in config.seeds
  ]
  return _write_metrics(
    config, workdir, watch.elapsed(), runs, n_test=len(evaluate.eval_test)
  )


def _stderr(p: float, n: int) -> float:
  return float(np.sqrt(max(p * (1 - p), 1e-12) / max(n, 1)))


def _series(history, key):
  pts = [(h['step'], h[key]) for h in history if key in h]
  return {'x': [p[0] for p in pts], 'y': [p[1] for p in pts]}


SPLITS = ('test_em', 'test_sampled_em', 'train_em')
ARMS = {
  'after_sft': 'SFT warm start',
  'after_sft_more': 'SFT continued (same budget)',
  'after_grpo': 'GRPO',
}


def _mean_series(histories, key):
  """The mean over seeds of `key` at the steps every seed logged it."""
  per = [_series(h, key) for h in histories]
  xs = sorted(set.intersection(*(set(p['x']) for p in per)))
  ys = [float(np.mean([p['y'][p['x'].index(x)] for p in per])) for x in xs]
  return {'x': xs, 'y': ys}


def _from_warm_start(series: dict, start: float) -> dict:
  """`series` with the warm start's value at step 0 (where both arms begin)."""
  if series['x'][:1] == [0]:
    return series
  return {'x': [0, *series['x']], 'y': [start, *series['y']]}


def _pm(values) -> str:
  mean, std = stats.mean_std(values)
  return f'{mean:.3f} ± {std:.3f}' if len(values) > 1 else f'{mean:.3f}'


def _write_metrics(config, workdir, seconds, runs, n_test):
  seeds = list(config.seeds)
  vals = {
    (arm, split): [r[arm][split] for r in runs]
    for arm in ARMS
    for split in SPLITS
  }
  summary: dict[str, Any] = {}
  for arm in ARMS:
    for split in SPLITS:
      summary[f'{split}_{arm}'] = float(np.mean(vals[(arm, split)]))
  summary['grpo_reward_first_20pct'] = float(
    np.mean([r['reward_first'] for r in runs])
  )
  summary['grpo_reward_last_20pct'] = float(
    np.mean([r['reward_last'] for r in runs])
  )
  summary['num_seeds'] = len(seeds)
  summary['seconds'] = seconds
  effects = [
    stats.paired_effect(
      vals[('after_grpo', 'test_em')], vals[(base, 'test_em')]
    ).as_entry('test exact match', 'GRPO', ARMS[base], paper)
    for base, paper in (
      ('after_sft_more', 'RL beats more SFT (DeepSeek-R1, Search-R1)'),
      ('after_sft', 'RL improves on the warm start'),
    )
  ]
  t = config.grpo.temperature
  effects += [
    stats.paired_effect(
      vals[('after_grpo', 'test_sampled_em')], vals[(base, 'test_sampled_em')]
    ).as_entry(f'test pass@1, sampled at T={t}', 'GRPO', ARMS[base], paper)
    for base, paper in (
      ('after_sft_more', 'DeepSeek-R1 reports pass@1 sampled at T=0.6'),
      ('after_sft', ''),
    )
  ]
  effects.append(
    stats.paired_effect(
      [r['reward_last'] for r in runs], [r['reward_first'] for r in runs]
    ).as_entry('sampled reward, last vs first 20% of steps', 'GRPO', 'GRPO')
  )
  se = _stderr(summary['test_em_after_grpo'], n_test)
  rows = [
    [label, *(_pm(vals[(arm, split)]) for split in SPLITS)]
    for arm, label in ARMS.items()
  ]
  sft_h = [r['sft_history'] for r in runs]
  grpo_h = [r['grpo_history'] for r in runs]
  more_h = [r['more_history'] for r in runs]
  result = {
    'title': 'lm_core: SFT then GRPO on 1-hop knowledge-world QA',
    'config_name': config.get('name', 'custom'),
    'headline': [
      'test_em_after_grpo',
      'test_em_after_sft_more',
      'test_em_after_sft',
      'num_seeds',
    ],
    'summary': summary,
    'effects': effects,
    'tables': [
      {
        'title': 'Exact match (1-hop, documents in the prompt; mean '
        f'± std over seeds {seeds})',
        'columns': [
          'model',
          f'test, held-out entities ({n_test} questions)',
          f'test pass@1 sampled at T={t} ({config.eval.samples} per question)',
          f'train sample ({config.eval.num_questions})',
        ],
        'rows': rows,
        'note': 'GRPO and the SFT continuation start from the same SFT '
        'checkpoint per seed, with the same learning rate, number of steps '
        'and batch shape. The SFT arms train on the labelled pool '
        f'({config.sft.num_demonstrations or "all"} train questions with '
        'golden answers); GRPO samples and scores answers to prompts drawn '
        'from every train question (it needs only the verifier).',
      }
    ],
    'curves': [
      {
        'title': 'SFT loss (mean over seeds)',
        'xlabel': 'step',
        'ylabel': 'cross-entropy',
        'series': {'sft loss': _mean_series(sft_h, 'loss')},
      },
      {
        'title': 'GRPO sampled exact-match reward (mean over seeds)',
        'xlabel': 'GRPO step',
        'ylabel': 'mean reward',
        'series': {'reward': _mean_series(grpo_h, 'reward_mean')},
      },
      {
        'title': 'Greedy test exact match after the warm start (mean over '
        'seeds)',
        'xlabel': 'step after SFT',
        'ylabel': 'exact match',
        'series': {
          'GRPO': _mean_series(grpo_h, 'eval_test_em'),
          'SFT continued': _from_warm_start(
            _mean_series(more_h, 'eval_test_em'),
            summary['test_em_after_sft'],
          ),
        },
      },
    ],
    'notes': [
      'A tiny decoder (see config.model) on CPU. The SFT budget is kept '
      'short on purpose so that GRPO starts from a partly working policy '
      '(see shared research note cpu_scale.md).',
      f"Exact match is measured on {n_test} test questions: one seed's "
      f'binomial standard error is about {se:.3f}; the effects table gives '
      'the paired bootstrap interval over seeds.',
    ],
  }
  return report.write_metrics(workdir, result)
