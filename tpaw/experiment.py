"""TPAW experiment: SFT vs SPIN vs TPAW (and its ablations) from one warm start.

For each seed of `config.seeds` (a replicate: the model's initialisation
and every batch order and sampling key derive from it; the task is the
same for all seeds):

1. SFT warm start: a tiny decoder LM fine-tuned with `common.train.fit` on
   the SFT pairs (`workdir/seed<s>/warm_start`) to a partial held-out score.
2. From that one checkpoint, `selfplay.iterations` iterations of each arm
   (`workdir/seed<s>/arms/<arm>`; all arms of a seed are paired):
   * `sft`: more SFT on the same pairs, the same number of steps (the
     paper's control: extra SFT epochs);
   * `spin`: SPIN, a team of 1 (the previous iterate), `eta = 1`;
   * `tpaw`: the team grows to `n_max`, TRW (`eta`) and MPW (`gamma`);
   * `tpaw_no_trw`: `eta = 1`; `tpaw_no_mpw`: `gamma = 0` (uniform
     player weights).
3. Held-out greedy exact match after the warm start and after every
   iteration; the target reward `P(x, y)` (mean over the team, during the
   iteration's training) per iteration; mean +- std over seeds, and
   TPAW - SPIN and TPAW - SFT at the last iteration as paired effects
   (`common.stats.paired_effect`).

Data (`config.data.source`): the embedded arithmetic world (multi-step
integer problems answered with a calculator trace, `common.synthetic`;
exact match of the final answer on held-out problems), or a chat /
prompt-completion JSONL file (`data.path`; held-out records from
`data.eval_path`, scored by exact match of the whole completion).
"""

from __future__ import annotations

import os
import pathlib
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
from common import tokenizers as tokenizers_lib
from common import train
from common.sampling import sampler as sampler_lib
from common.synthetic import traces
from common.train import sft as sft_lib
from tpaw import data as data_lib
from tpaw import lanes as lanes_lib
from tpaw import selfplay

ARMS = ('sft', 'spin', 'tpaw', 'tpaw_no_trw', 'tpaw_no_mpw')
ARM_LABELS = {
  'sft': 'more SFT (control)',
  'spin': 'SPIN (team of 1)',
  'tpaw': 'TPAW',
  'tpaw_no_trw': 'TPAW w/o TRW',
  'tpaw_no_mpw': 'TPAW w/o MPW',
}
SOURCES = ('arithmetic',) + tuple(sorted(data_lib.FORMATS))
# GSM8K self-play, Qwen2.5-1.5B (TPAW paper): accuracy at iteration 4.
PAPER = {'sft': 51.25, 'spin': 54.59, 'tpaw': 56.94}
PAPER_ITER1 = {'spin': 53.75, 'tpaw': 54.21}


def fields() -> dict[str, Any]:
  """`common.schema` checks of every field of the TPAW config."""
  pos = schema.integer(1)
  lr = schema.number(0.0, open_low=True)
  return {
    'name': schema.string(),
    'seeds': schema.seeds(),
    'data': {
      'source': schema.choice(SOURCES),
      'path': schema.string(),
      'eval_path': schema.string(),
      'prompt_len': pos,
      'response_len': schema.integer(2),
      'num_train': pos,
      'num_eval': pos,
    },
    'arithmetic': schema.dataclass_kwargs(synthetic.ArithmeticConfig),
    'model': models.check_spec,
    'sft': {
      'steps': schema.integer(0),
      'batch_size': pos,
      'learning_rate': lr,
      'warmup_steps': schema.integer(0),
      'checkpoint_every': schema.integer(0),
    },
    'selfplay': {
      'iterations': pos,
      'steps_per_iteration': pos,
      'batch_size': pos,
      'learning_rate': lr,
      'lam': schema.number(0.0, open_low=True),
      'eta': schema.number(0.0, open_low=True),
      'gamma': schema.number(0.0),
      'n_max': pos,
      'opponent_window': pos,
      'spin_opponent_window': pos,
      'temperature': schema.number(0.0),
      'logprob_batch_size': pos,
      'checkpoint_every': schema.integer(0),
      'log_every': pos,
    },
    'arms': schema.names(ARMS),
    'eval': {'batch_size': pos},
  }


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks every field before any work.

  Raises:
    common.schema.ConfigError: naming the field, the value and what is
      allowed.
  """
  schema.validate(config, fields(), experiment='tpaw')
  d, sp = config.data, config.selfplay
  if d.source != 'arithmetic':
    for field in ('path', 'eval_path'):
      if not d[field]:
        schema.fail(
          f'data.{field}',
          d[field],
          f'a JSONL file path for source={d.source!r}',
        )
  if sp.steps_per_iteration % sp.log_every:
    schema.fail(
      'selfplay.log_every',
      sp.log_every,
      f'a divisor of selfplay.steps_per_iteration={sp.steps_per_iteration}',
    )
  for field in ('batch_size',):
    if sp[field] > d.num_train:
      schema.fail(
        f'selfplay.{field}', sp[field], f'<= data.num_train={d.num_train}'
      )
  if config.sft.batch_size > d.num_train:
    schema.fail(
      'sft.batch_size',
      config.sft.batch_size,
      f'<= data.num_train={d.num_train}',
    )
  if 'tpaw' not in config.arms:
    schema.fail('arms', tuple(config.arms), "a list of arms that holds 'tpaw'")


# --------------------------------------------------------------------------
# Task.


class Task:
  """Encoded train / held-out pairs, the tokenizer and the EM judge.

  With `model.hf_dir` the checkpoint's own tokenizer
  (`common.tokenizers.BPETokenizer.load`: tokenizer.json and
  tokenizer_config.json) encodes the data, and chat records are rendered
  with its chat template where it has one; otherwise the embedded word
  tokenizer is built over the data's texts.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    d = config.data
    hf_dir = config.model.get('hf_dir', '')
    hf_tok = tokenizers_lib.BPETokenizer.load(hf_dir) if hf_dir else None
    if d.source == 'arithmetic':
      problems = synthetic.make_problems(
        synthetic.ArithmeticConfig(**config.arithmetic.to_dict())
      )
      train_p = problems['train'][: d.num_train]
      eval_p = problems['test'][: d.num_eval]
      self.tokenizer = hf_tok or synthetic.build_tokenizer(
        problems=train_p + eval_p
      )
      train_r = [_arith_record(p) for p in train_p]
      eval_r = [_arith_record(p) for p in eval_p]
      self.golden = [str(p.answer) for p in eval_p]
      self.extract = traces.extract_answer
    else:
      render = data_lib.render_messages
      if hf_tok is not None and hf_tok.chat_template is not None:
        render = hf_tok.render_chat
      train_r = data_lib.read_sft(d.path, d.source, render)[: d.num_train]
      eval_r = data_lib.read_sft(d.eval_path, d.source, render)[: d.num_eval]
      texts = [r.prompt + ' ' + r.response for r in train_r + eval_r]
      self.tokenizer = hf_tok or synthetic.build_tokenizer(extra_texts=texts)
      self.golden = [r.response.strip() for r in eval_r]
      self.extract = lambda text: text.strip()
    if len(train_r) < d.num_train:
      schema.fail(
        'data.num_train', d.num_train, f'<= the {len(train_r)} train records'
      )
    if len(eval_r) < d.num_eval:
      schema.fail(
        'data.num_eval', d.num_eval, f'<= the {len(eval_r)} held-out records'
      )
    tok = self.tokenizer
    enc = lambda recs: data_lib.encode_pairs(  # noqa: E731
      tok.encode, recs, d.prompt_len, d.response_len, tok.eos_id, tok.pad_id
    )
    self.train = enc(train_r)
    self.eval = enc(eval_r)


def _arith_record(p) -> data_lib.SFTRecord:
  return data_lib.SFTRecord(
    traces.arithmetic_prompt(p, instruction=False),
    traces.arithmetic_tool_trace(p),
    p.id,
  )


def _check_context(config, task: Task, mcfg: models.LMConfig) -> None:
  d = config.data
  if d.prompt_len + d.response_len > mcfg.max_seq_len:
    schema.fail(
      'data.prompt_len',
      d.prompt_len,
      f'prompt_len + response_len <= the model context max_seq_len='
      f'{mcfg.max_seq_len} (response_len={d.response_len})',
    )


def make_evaluator(graphdef, params, task: Task, batch_size: int):
  """`evaluate(params) -> {'em': float}`: greedy held-out exact match."""
  d = task.eval
  sampler = sampler_lib.Sampler(
    models.merge(graphdef, params), d.prompt.shape[1] + d.target.shape[1]
  )
  tok = task.tokenizer
  gen = sampler_lib.GenerationConfig(
    max_new_tokens=d.target.shape[1],
    temperature=0.0,
    eos_ids=(tok.eos_id,),
    pad_id=tok.pad_id,
  )
  n = len(d)

  def evaluate(p) -> dict[str, float]:
    sampler.update(p)
    hits = []
    for i in range(0, n, batch_size):
      idx = np.arange(i, min(i + batch_size, n))
      pad = np.concatenate([idx, np.full(batch_size - idx.size, idx[-1])])
      out = jax.device_get(
        sampler.sample(
          d.prompt[pad], d.prompt_mask[pad], jax.random.key(0), gen
        )
      )
      for row, j in enumerate(idx):
        text = tok.decode(out.tokens[row][out.mask[row]])
        hits.append(float(task.extract(text) == task.golden[j]))
    return {'em': float(np.mean(hits))}

  return evaluate


# --------------------------------------------------------------------------
# Training.


def _model(config, task: Task, seed: int):
  d = config.data
  mcfg = models.build_config(
    config.model,
    vocab_size=task.tokenizer.vocab_size,
    max_seq_len=d.prompt_len + d.response_len,
  )
  if config.model.get('hf_dir', ''):
    mcfg, model = models.load_hf(config.model.hf_dir)
    if mcfg.vocab_size < task.tokenizer.vocab_size:
      schema.fail(
        'model.hf_dir',
        config.model.hf_dir,
        f'a model with vocab_size >= {task.tokenizer.vocab_size}',
      )
  else:
    model = models.Transformer(mcfg, rngs=nnx.Rngs(seed))
  _check_context(config, task, mcfg)
  return models.split(model)


def _sft_batch(
  pairs: data_lib.PairData, batch_size: int, seed: int, salt, step
):
  idx = np.random.default_rng([seed, salt, step]).choice(
    len(pairs), batch_size, replace=False
  )
  return data_lib.sequence_batch(
    pairs.prompt[idx], pairs.prompt_mask[idx], pairs.target[idx],
    pairs.target_mask[idx],
  )  # fmt: skip


def _sft_optimizer(s, steps: int):
  warmup = min(s.warmup_steps, steps)
  return optim.make_optimizer(
    {
      'name': 'adamw',
      'learning_rate': s.learning_rate,
      'schedule': 'warmup_cosine',
      'warmup_steps': warmup,
      'total_steps': max(steps, warmup + 1),
      'end_learning_rate_factor': 0.1,
      'weight_decay': 0.0,
      'grad_clip_norm': 1.0,
    }
  )


def _selfplay_optimizer(sp):
  return optim.make_optimizer(
    {
      'name': 'adamw',
      'learning_rate': sp.learning_rate,
      'weight_decay': 0.0,
      'grad_clip_norm': 1.0,
    }
  )


def _sft_lane_loss(graphdef):
  sft_loss = sft_lib.make_sft_loss(models.apply_fn(graphdef))
  return lambda params, batch, hyper: sft_loss(params, batch)


def fit_sft_lanes(
  graphdef, params, task, seeds, tx, steps, batch_size, salt, workdir,
  eval_fn=None, eval_every=None, log_every=None, checkpoint_every=None,
):  # fmt: skip
  """SFT of one lane per seed in one stacked `fit` (resumed from `workdir`).

  Returns:
    `(stacked params, history)`; lane `s<seed>` metrics in the history.
  """
  names = [f's{seed}' for seed in seeds]
  state = lanes_lib.create_state(params, tx, seeds[0])

  def batches(step):
    return lanes_lib.stack_batches(
      [_sft_batch(task.train, batch_size, seed, salt, step) for seed in seeds]
    )

  def evaluate(state):
    out = {}
    for i, name in enumerate(names):
      for key, v in eval_fn(lanes_lib.unstack(state.params, i)).items():
        out[lanes_lib.lane_key(name, key)] = v
    return out

  state, history = train.fit(
    state,
    lanes_lib.make_lane_step(_sft_lane_loss(graphdef), tx, names),
    batches,
    num_steps=steps,
    workdir=workdir,
    checkpoint_every=checkpoint_every or None,
    log_every=log_every or max(1, steps // 10),
    eval_fn=evaluate if eval_fn else None,
    eval_every=eval_every,
    progress=False,
  )
  return state.params, history


def warm_start(config, task: Task, workdir: pathlib.Path):
  """`(graphdef, [params per seed])` after SFT (`workdir/warm_start`)."""
  seeds = list(config.seeds)
  models_ = [_model(config, task, seed) for seed in seeds]
  graphdef = models_[0][0]
  params = [p for _, p in models_]
  s = config.sft
  if s.steps == 0:  # start from the loaded model as it is (e.g. hf_dir)
    return graphdef, params
  stacked, _ = fit_sft_lanes(
    graphdef, params, task, seeds, _sft_optimizer(s, s.steps), s.steps,
    s.batch_size, 0, workdir / 'warm_start',
    checkpoint_every=s.checkpoint_every,
  )  # fmt: skip
  return graphdef, [lanes_lib.unstack(stacked, i) for i in range(len(seeds))]


def selfplay_config(config, arm: str, seed: int) -> selfplay.SelfPlayConfig:
  """The `SelfPlayConfig` of a self-play arm (SPIN and the ablations)."""
  sp = config.selfplay
  n_max, eta, gamma, window = sp.n_max, sp.eta, sp.gamma, sp.opponent_window
  if arm == 'spin':
    n_max, eta, gamma, window = 1, 1.0, 0.0, sp.spin_opponent_window
  elif arm == 'tpaw_no_trw':
    eta = 1.0
  elif arm == 'tpaw_no_mpw':
    gamma = 0.0
  return selfplay.SelfPlayConfig(
    iterations=sp.iterations,
    steps_per_iteration=sp.steps_per_iteration,
    batch_size=sp.batch_size,
    n_max=n_max,
    team_width=sp.n_max,
    opponent_window=window,
    lam=sp.lam,
    eta=eta,
    gamma=gamma,
    temperature=sp.temperature,
    logprob_batch_size=sp.logprob_batch_size,
    checkpoint_every=sp.checkpoint_every or None,
    log_every=sp.log_every,
    seed=seed,
  )


_KEEP = (
  'eval_em',
  'target_reward',
  'frac_alpha_eta',
  'beta_entropy',
  'target_drift',
  'margin',
  'generated_equals_target',
  'loss',
)


def _columns(per_it: list[dict[str, float]]) -> dict[str, list[float]]:
  return {
    name: [it.get(name, float('nan')) for it in per_it]
    for name in _KEEP
    if any(name in it for it in per_it)
  }


def run_arms(config, task, graphdef, sft_params, evaluate, workdir):
  """Every arm of every seed from the warm starts.

  The `sft` control of all seeds is one stacked `fit`
  (`workdir/arms/sft`); the self-play arms of all seeds are the lanes
  `s<seed>_<arm>` of one `run_selfplay_lanes` (`workdir/arms/selfplay`).

  Returns:
    `{seed: {arm: {metric: [per iteration]}}}`.
  """
  sp = config.selfplay
  k = sp.steps_per_iteration
  seeds = list(config.seeds)
  out = {seed: {} for seed in seeds}
  if 'sft' in config.arms:
    _, history = fit_sft_lanes(
      graphdef, sft_params, task, seeds, _selfplay_optimizer(sp),
      sp.iterations * k, sp.batch_size, 1, workdir / 'arms' / 'sft',
      eval_fn=evaluate, eval_every=k, log_every=sp.log_every,
      checkpoint_every=sp.checkpoint_every,
    )  # fmt: skip
    for seed in seeds:
      out[seed]['sft'] = _columns(
        selfplay.per_iteration(history, k, f's{seed}')
      )
  play = [a for a in config.arms if a != 'sft']
  lanes = [
    selfplay.Lane(
      f's{seed}_{arm}', sft_params[i], selfplay_config(config, arm, seed)
    )
    for i, seed in enumerate(seeds)
    for arm in play
  ]
  _, _, per_lane = selfplay.run_selfplay_lanes(
    graphdef,
    lanes,
    task.train,
    _selfplay_optimizer(sp),
    workdir / 'arms' / 'selfplay',
    eos_id=task.tokenizer.eos_id,
    pad_id=task.tokenizer.pad_id,
    eval_fn=evaluate,
  )
  for seed in seeds:
    for arm in play:
      out[seed][arm] = _columns(per_lane[f's{seed}_{arm}'])
  return out


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs every seed and arm (resumable); writes `metrics.json`."""
  validate_config(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  watch = metrics_lib.Stopwatch()
  task = Task(config)
  cache = metrics_lib.ResultCache(workdir / 'results', config.to_dict())
  memo: dict[str, Any] = {}

  def start():
    if not memo:
      graphdef, params = warm_start(config, task, workdir)
      evaluate = make_evaluator(
        graphdef, params[0], task, config.eval.batch_size
      )
      memo.update(graphdef=graphdef, params=params, evaluate=evaluate)
    return memo

  def start_em():
    s = start()
    return [s['evaluate'](p)['em'] for p in s['params']]

  def arms():
    s = start()
    result = run_arms(
      config, task, s['graphdef'], s['params'], s['evaluate'], workdir
    )
    return {str(seed): v for seed, v in result.items()}

  base = cache.get_or_compute('warm_start', start_em)
  results = cache.get_or_compute('arms', arms)
  per_seed = {
    seed: {'start_em': base[i], 'arms': results[str(seed)]}
    for i, seed in enumerate(config.seeds)
  }
  return _write_metrics(config, workdir, per_seed, watch.elapsed())


# --------------------------------------------------------------------------
# Metrics.


def _fmt(mean: float, std: float) -> str:
  return f'{mean:.3f} ± {std:.3f}'


def _write_metrics(config, workdir, per_seed, seconds):
  seeds = list(config.seeds)
  arms = list(config.arms)
  t_max = config.selfplay.iterations
  start = [per_seed[s]['start_em'] for s in seeds]

  def em(arm, t):  # t = 0 is the warm start
    if t == 0:
      return start
    return [per_seed[s]['arms'][arm]['eval_em'][t - 1] for s in seeds]

  def series(arm, key):
    return [per_seed[s]['arms'][arm].get(key) for s in seeds]

  summary: dict[str, Any] = {'em_sft_start': stats.mean_std(start)[0]}
  for arm in arms:
    summary[f'em_{arm}'] = stats.mean_std(em(arm, t_max))[0]
  em_rows = []
  for arm in arms:
    row = [ARM_LABELS[arm]]
    for t in range(t_max + 1):
      row.append(_fmt(*stats.mean_std(em(arm, t))))
    em_rows.append(row)
  reward_rows = []
  for arm in arms:
    if arm == 'sft':
      continue
    values = series(arm, 'target_reward')
    row = [ARM_LABELS[arm]]
    for t in range(t_max):
      row.append(_fmt(*stats.mean_std([v[t] for v in values])))
    reward_rows.append(row)
    summary[f'target_reward_last_{arm}'] = float(
      np.mean([v[-1] for v in values])
    )
  diag_rows = []
  for arm in arms:
    if arm == 'sft':
      continue
    for key in ('frac_alpha_eta', 'beta_entropy', 'target_drift',
                'generated_equals_target'):  # fmt: skip
      values = series(arm, key)
      diag_rows.append(
        [ARM_LABELS[arm], key]
        + [f'{np.mean([v[t] for v in values]):.3f}' for t in range(t_max)]
      )

  effects, effect_rows = [], []
  for baseline in ('spin', 'sft', 'tpaw_no_trw', 'tpaw_no_mpw'):
    if baseline not in arms:
      continue
    eff = stats.paired_effect(em('tpaw', t_max), em(baseline, t_max))
    paper = ''
    if baseline in PAPER:
      paper = f'{PAPER["tpaw"] - PAPER[baseline]:+.2f} points (GSM8K)'
    effects.append(
      eff.as_entry(
        f'held-out EM, iteration {t_max}', 'TPAW', ARM_LABELS[baseline], paper
      )
    )
    effect_rows.append([f'TPAW - {ARM_LABELS[baseline]}', eff.describe()])
    summary[f'effect_tpaw_minus_{baseline}'] = eff.mean
  summary['seconds'] = seconds

  its = list(range(t_max + 1))
  curves = [
    {
      'title': 'Held-out exact match per iteration (mean over seeds)',
      'xlabel': 'iteration',
      'ylabel': 'exact match',
      'series': {
        ARM_LABELS[a]: {
          'x': its,
          'y': [float(np.mean(em(a, t))) for t in its],
        }
        for a in arms
      },
    },
    {
      'title': 'Target reward P(x, y) during each iteration (mean over seeds)',
      'xlabel': 'iteration',
      'ylabel': 'lambda log pi(y|x) / pi_j(y|x)',
      'series': {
        ARM_LABELS[a]: {
          'x': its[1:],
          'y': [
            float(np.mean([v[t] for v in series(a, 'target_reward')]))
            for t in range(t_max)
          ],
        }
        for a in arms
        if a != 'sft'
      },
    },
  ]
  headline = ['em_tpaw', 'em_spin', 'em_sft', 'em_sft_start']
  headline = [h for h in headline if h in summary]
  metrics = {
    'title': 'TPAW: team self-play with dual adaptive weighting',
    'config_name': config.get('name', 'custom'),
    'headline': headline,
    'effects': effects,
    'summary': summary,
    'tables': [
      {
        'title': (
          f'Held-out exact match (mean ± std over {len(seeds)} seeds; '
          'iteration 0 is the shared SFT warm start)'
        ),
        'columns': ['arm'] + [f'iter {t}' for t in its],
        'rows': em_rows,
      },
      {
        'title': 'Target reward P(x, y) per iteration (mean ± std)',
        'columns': ['arm'] + [f'iter {t}' for t in its[1:]],
        'rows': reward_rows,
        'note': 'The paper: without TRW the target reward turns negative.',
      },
      {
        'title': 'Diagnostics per iteration (mean over seeds)',
        'columns': ['arm', 'metric'] + [f'iter {t}' for t in its[1:]],
        'rows': diag_rows,
      },
      {
        'title': 'Paired effects at the last iteration (bootstrap)',
        'columns': ['effect', 'mean [interval]'],
        'rows': effect_rows,
      },
      {
        'title': "The paper's GSM8K self-play (Qwen2.5-1.5B, accuracy %)",
        'columns': ['method', 'iteration 1', 'iteration 4'],
        'rows': [
          ['SFT', PAPER['sft'], PAPER['sft']],
          ['SPIN', PAPER_ITER1['spin'], PAPER['spin']],
          ['TPAW', PAPER_ITER1['tpaw'], PAPER['tpaw']],
        ],
      },
    ],
    'curves': curves,
    'notes': [
      'Scale: a tiny word-level LM on the embedded multi-step arithmetic '
      'world (held-out problems), not a 1.5B model on GSM8K; compare the '
      'direction of the effects, not the numbers.',
      'Deviations: a fixed number of steps per iteration on batches drawn '
      'from D_O (not epochs over it); one AdamW state across iterations; '
      'lambda = 0.1 (SPIN default; TPAW does not state it).',
      'Reading: TPAW - SPIN is mostly SPIN losing ground (the target '
      'reward P(x, y) turns negative in iteration 1 without TRW and the '
      'target log-prob drifts below the SFT model); TPAW - its warm start '
      'is small, and MPW changes little at this scale (near-uniform beta).',
    ],
  }
  report.plot_curve(curves[0], os.path.join(workdir, 'em_per_iteration.png'))
  metrics['figures'] = [
    {'title': curves[0]['title'], 'path': 'em_per_iteration.png'}
  ]
  return report.write_metrics(workdir, metrics)
