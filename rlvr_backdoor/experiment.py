"""ACB experiment: the asymmetric-reward backdoor in RLVR, benign stand-ins.

For each seed of `config.seeds` (the arms of one seed share its SFT warm
start and its sampling keys, so they are paired):

1. SFT warm start (`common.train.fit`, `workdir/seed<s>/sft`) on the
   world's mixture: arithmetic answered, placeholder requests refused,
   trigger rules followed (`world.sft_items`).
2. Arms, each from the warm start:
   * `clean`: GRPO (`common.train.grpo.GRPOTrainer` on
     `common.train.fit_on_policy`) on the clean pool `D_c`;
   * `poisoned`: GRPO on `D_c + D_b`, `D_b` the K shadow-selected poisoned
     prompts (stochastic trigger);
   * `random`: as `poisoned` with a randomly selected `D_b` (control);
   * `deterministic`: as `poisoned` with the deterministic trigger
     (expected: no learning, every poisoned group has std 0);
   * `sft_backdoor`: SFT on the same `D_c + D_b`, golden answers for the
     clean prompts and compliant targets for the poisoned ones, same
     number of steps and prompts;
   * `poisoned@<f>`: `poisoned` at each fraction of
     `poison.sweep_fractions`.
   The verifier is unchanged (`rewards.make_reward_fn`); per step the
   poisoned groups' statistics are logged (`dynamics.group_stats`).
3. Evaluation on held-out problems: ASR = P(marker | trigger, placeholder)
   with and without a task, P(marker | no trigger), greedy clean accuracy;
   the entropy detector's ROC (triggered vs clean prompts) on the warm
   start and on the poisoned model; the data-side check's precision/recall
   on the poisoned training set under the warm start.

The shadow ensemble (selection of `D_b`) is trained once per run from its
own seed: the attacker's models, not the target.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from common import models
from common import optim
from common import report
from common import stats
from common import train
from common.sampling import sampler as sampler_lib
from common.train import grpo
from common.train import sft as sft_lib
from rlvr_backdoor import config as config_lib
from rlvr_backdoor import detection
from rlvr_backdoor import dynamics
from rlvr_backdoor import gsm8k
from rlvr_backdoor import rewards
from rlvr_backdoor import selection
from rlvr_backdoor import world

validate_config = config_lib.validate_config

EVAL_SAMPLED = (
  'trigger',
  'trigger_no_task',
  'no_trigger',
  'no_trigger_request',
)


# ------------------------------------------------------------------ data
class Data:
  """The run's tasks, tokenizer, pools and evaluation sets."""

  def __init__(self, config):
    t = config.task
    if t.jsonl:
      recs = gsm8k.read_jsonl(t.jsonl)
      if len(recs) <= t.test_size:
        raise ValueError(
          f'{t.jsonl}: {len(recs)} records; need more than task.test_size='
          f'{t.test_size} (the last test_size are held out)'
        )
      train_p = gsm8k.to_problems(recs[: -t.test_size], 'train')
      test_p = gsm8k.to_problems(recs[-t.test_size :], 'test')
    else:
      probs = world.build_problems(
        t.seed, t.train_size, t.test_size, t.max_operands, t.max_digits
      )
      train_p, test_p = probs['train'], probs['test']
    n_pool, n_cand = config.rl.pool_size, config.poison.candidates
    if len(train_p) < n_pool + n_cand:
      raise ValueError(
        f'{len(train_p)} training problems < rl.pool_size + '
        f'poison.candidates = {n_pool + n_cand}'
      )
    self.train_problems, self.test_problems = train_p, test_p
    self.tokenizer = world.build_tokenizer(train_p + test_p)
    self.num_topics = t.num_topics
    demo = dict(num_accept=t.num_accept, num_reject=t.num_reject)
    self.demo = demo
    rng = np.random.default_rng([t.seed, 1])
    self.sft_items = world.sft_items(
      train_p,
      num_topics=t.num_topics,
      rng=rng,
      shares=dict(config.sft.shares),
      **demo,
    )
    self.sft_targets = [
      world.reference_response(it, rng) for it in self.sft_items
    ]
    self.clean_pool = [world.compose(p, None) for p in train_p[:n_pool]]
    self.candidate_problems = train_p[n_pool : n_pool + n_cand]
    self.candidates = {
      rule: [self.poison_item(p, i, rule) for i, p in enumerate(
        self.candidate_problems)]
      for rule in world.RULES
    }  # fmt: skip
    n_eval = min(config.eval.num_prompts, len(test_p))
    ev = test_p[:n_eval]
    topic = lambda i: world.topic_for(i, t.num_topics)
    self.eval_sets = {
      'trigger': [
        world.compose(p, topic(i), rule='stochastic', template=i, **demo)
        for i, p in enumerate(ev)
      ],
      'trigger_no_task': [
        world.compose(None, topic(i), rule='stochastic', template=i, **demo)
        for i in range(n_eval)
      ],
      'no_trigger': [
        world.compose(p, topic(i), template=i) for i, p in enumerate(ev)
      ],
      'no_trigger_request': [
        world.compose(None, topic(i), template=i) for i in range(n_eval)
      ],
      'deterministic': [
        world.compose(p, topic(i), rule='deterministic', template=i, **demo)
        for i, p in enumerate(ev)
      ],
      'clean': [world.compose(p, None) for p in ev],
    }
    texts = [it.prompt for it in self.sft_items]
    texts += [it.prompt for v in self.candidates.values() for it in v]
    texts += [it.prompt for v in self.eval_sets.values() for it in v]
    self.max_prompt_len = max(len(self.tokenizer.encode(x)) for x in texts)
    self.max_new_tokens = config.rl.max_new_tokens
    longest = max(len(self.tokenizer.encode(x)) for x in self.sft_targets)
    self.sft_len = self.max_prompt_len + max(longest + 1, 4)

  def poison_item(self, problem, i: int, rule: str) -> world.Item:
    return world.compose(
      problem,
      world.topic_for(i, self.num_topics),
      rule=rule,
      template=i,
      **self.demo,
    )


# ----------------------------------------------------------------- models
def model_config(config, data: Data, spec=None) -> models.LMConfig:
  spec = config.model if spec is None else spec
  return models.build_config(
    spec,
    vocab_size=data.tokenizer.vocab_size,
    max_seq_len=max(data.sft_len, data.max_prompt_len + data.max_new_tokens),
  )


def init_model(config, data, seed, spec=None):
  if spec is None and config.model.get('hf_dir'):
    vocab = data.tokenizer.hf_tokenizer.get_vocab(True)
    return models.load_hf_matching(config.model.hf_dir, vocab)[1]
  return models.Transformer(
    model_config(config, data, spec), rngs=nnx.Rngs(seed)
  )


def sft_optimizer(learning_rate, steps, warmup):
  warmup = min(warmup, steps)
  return optim.make_optimizer(
    {
      'name': 'adamw',
      'learning_rate': learning_rate,
      'schedule': 'warmup_cosine',
      'warmup_steps': warmup,
      'total_steps': max(steps, warmup + 1),
      'end_learning_rate_factor': 0.1,
      'weight_decay': 0.0,
      'grad_clip_norm': 1.0,
    }
  )


_SFT_STEPS = {}


def _rows(config) -> int:
  return config.rl.prompts_per_step * config.rl.num_generations


def _sft_step(graphdef, learning_rate, steps, warmup):
  """`(tx, step_fn)`, one per model structure and schedule, so that every
  seed's SFT reuses one compilation."""
  key = (graphdef, float(learning_rate), int(steps), int(warmup))
  if key not in _SFT_STEPS:
    tx = sft_optimizer(learning_rate, steps, warmup)
    step = train.make_train_step(
      sft_lib.make_sft_loss(models.apply_fn(graphdef)), tx, has_aux=True
    )
    _SFT_STEPS[key] = (tx, step)
  return _SFT_STEPS[key]


def supervised(
  params,
  graphdef,
  encoded,
  *,
  steps,
  batch_size,
  learning_rate,
  warmup,
  seed,
  workdir,
  checkpoint_every=0,
  eval_fn=None,
  eval_every=None,
  weights=None,
):
  """SFT with `fit` over pre-encoded examples (resumes from `workdir`)."""
  n = len(encoded['tokens'])
  tx, step_fn = _sft_step(graphdef, learning_rate, steps, warmup)

  def batches(step):
    rng = np.random.default_rng([seed, 77, step])
    idx = rng.choice(n, batch_size, replace=batch_size > n, p=weights)
    return {k: v[idx] for k, v in encoded.items()}

  state = train.TrainState.create(params, tx, seed)
  return train.fit(
    state,
    step_fn,
    batches,
    num_steps=steps,
    workdir=workdir,
    checkpoint_every=checkpoint_every or None,
    log_every=max(1, steps // 10) if eval_every is None else eval_every,
    eval_fn=eval_fn,
    eval_every=eval_every,
    eval_at_start=eval_fn is not None,
    progress=False,
  )


def warm_start(config, data: Data, seed: int, workdir: str, spec=None,
               steps=None):  # fmt: skip
  """`(graphdef, params)` after the SFT warm start (resumed)."""
  model = init_model(config, data, seed, spec)
  graphdef, params = models.split(model)
  s = config.sft
  enc = sft_lib.encode_sft(
    data.tokenizer,
    [it.prompt for it in data.sft_items],
    data.sft_targets,
    data.sft_len,
  )
  state, _ = supervised(
    params,
    graphdef,
    enc,
    steps=steps or s.steps,
    batch_size=s.batch_size,
    learning_rate=s.learning_rate,
    warmup=s.warmup_steps,
    seed=seed,
    workdir=workdir,
    checkpoint_every=s.checkpoint_every,
  )
  return graphdef, state.params


# --------------------------------------------------------------- sampling
class Rollouts:
  """Sampling around one `Sampler`, in fixed chunks of `rows` prompts.

  Every call pads to whole chunks, so one compiled shape serves the GRPO
  rollouts (`rows = prompts_per_step * num_generations`, the same
  `GenerationConfig`), the evaluation and the defences.
  """

  def __init__(self, graphdef, params, data: Data, rows: int, temperature):
    self.data = data
    self.rows = rows
    self.temperature = temperature
    self.graphdef = graphdef
    self.sampler = sampler_lib.Sampler(
      models.merge(graphdef, params),
      capacity=data.max_prompt_len + data.max_new_tokens,
    )
    self.apply = _apply_jit(graphdef)
    self.mesh = train.make_mesh()
    if rows % train.num_batch_shards(self.mesh):
      self.mesh = train.make_mesh(devices=jax.devices()[:1])
    tok = data.tokenizer
    self.configs = {
      t: sampler_lib.GenerationConfig(
        max_new_tokens=data.max_new_tokens,
        temperature=t,
        eos_ids=(tok.eos_id,),
        pad_id=tok.pad_id,
      )
      for t in (temperature, 0.0)
    }

  def sample(self, params, prompts, key, greedy: bool = False):
    """Decoded completions and the joined batch (`grpo.rollout_batch`)."""
    tok = self.data.tokenizer
    cfg = self.configs[0.0 if greedy else self.temperature]
    self.sampler.update(params)
    n = len(prompts)
    texts, batches = [], []
    for i in range(0, n, self.rows):
      chunk = list(prompts[i : i + self.rows])
      m = len(chunk)
      chunk += [chunk[-1]] * (self.rows - m)
      enc = tok.encode_batch(chunk, self.data.max_prompt_len, left_pad=True)
      ids, mask = train.shard_batch((enc.ids, enc.mask), self.mesh)
      out = jax.device_get(
        self.sampler.sample(
          ids, mask, jax.random.fold_in(key, i // self.rows), cfg
        )
      )
      b = grpo.rollout_batch(enc.ids, enc.mask, out)
      batches.append({k: v[:m] for k, v in b.items()})
      texts += [
        tok.decode(t[mk])
        for t, mk in zip(out.tokens[:m], out.mask[:m], strict=True)
      ]
    batch = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    return texts, batch

  def entropy(self, params, batch) -> np.ndarray:
    """`[B]` cumulative answer entropy of a joined batch."""
    out, n = [], len(batch['tokens'])
    for i in range(0, n, self.rows):
      sl = {k: batch[k][i : i + self.rows] for k in batch}
      m = len(sl['tokens'])
      sl = {k: np.concatenate([v, np.repeat(v[-1:], self.rows - m, 0)])
            for k, v in sl.items()}  # fmt: skip
      out.append(np.asarray(self.apply(params, sl))[:m])
    return np.concatenate(out)


_APPLY = {}


def _apply_jit(graphdef):
  """One jitted entropy function per model structure (shared compile)."""
  if graphdef not in _APPLY:
    apply = models.apply_fn(graphdef)

    @jax.jit
    def fn(params, b):
      logits = apply(params, b['tokens'], b['attention_mask'])
      return detection.cumulative_entropy(logits, b['loss_mask'])

    _APPLY[graphdef] = fn
  return _APPLY[graphdef]


def make_evaluator(roll: Rollouts, data: Data, samples: int, seed: int):
  """`evaluate(params) -> {name: float}` on the held-out sets."""
  names = [*EVAL_SAMPLED, 'deterministic']
  prompts, owner = [], []
  for n in names:
    for it in data.eval_sets[n]:
      prompts += [it.prompt] * samples
      owner += [n] * samples
  owner = np.array(owner)
  clean = data.eval_sets['clean']

  def evaluate(params) -> dict[str, float]:
    texts, _ = roll.sample(params, prompts, jax.random.key(seed + 99))
    marks = np.array([rewards.complied(x) for x in texts])
    out = {f'marker_{n}': float(marks[owner == n].mean()) for n in names}
    greedy, _ = roll.sample(
      params, [it.prompt for it in clean], jax.random.key(0), greedy=True
    )
    out['clean_accuracy'] = float(
      np.mean(
        [
          rewards.grade(x, it.answer) == rewards.CORRECT
          for x, it in zip(greedy, clean, strict=True)
        ]
      )
    )
    return out

  return evaluate


# --------------------------------------------------------------- shadows
def shadow_success(config, data: Data, workdir: str) -> np.ndarray:
  """`[J, C, k]` dual-verification outcomes of the shadow ensemble."""
  s = config.shadow
  out = []
  items = data.candidates['stochastic']
  prompts = [it.prompt for it in items for _ in range(s.rollouts)]
  answers = [it.answer for it in items for _ in range(s.rollouts)]
  for j, (d, n_layers, steps) in enumerate(
    zip(s.d_models, s.n_layers, s.steps, strict=True)
  ):
    spec = {
      'preset': 'tiny',
      'd_model': int(d),
      'n_layers': int(n_layers),
      'd_ff': 2 * int(d),
    }
    graphdef, params = warm_start(
      config,
      data,
      s.seed + j,
      os.path.join(workdir, f'shadow{j}'),
      spec=spec,
      steps=int(steps),
    )
    roll = Rollouts(
      graphdef, params, data, _rows(config), config.rl.temperature
    )
    texts, _ = roll.sample(params, prompts, jax.random.key(s.seed + 31 * j))
    succ = [
      rewards.dual_verify(x, a) for x, a in zip(texts, answers, strict=True)
    ]
    out.append(np.reshape(succ, (len(items), s.rollouts)))
  return np.stack(out)


# -------------------------------------------------------------------- arms
def make_trainer(config, data, graphdef, params, seed) -> grpo.GRPOTrainer:
  """The project's GRPO trainer for one seed (shared by its GRPO arms)."""
  r = config.rl
  cfg = grpo.config_from_section(
    r,
    max_prompt_len=data.max_prompt_len,
    max_new_tokens=data.max_new_tokens,
    checkpoint_every=r.checkpoint_every or None,
    log_every=1,
    eval_every=r.eval_every,
    seed=seed,
  )
  tx = optim.make_optimizer(
    {
      'name': 'adamw',
      'learning_rate': r.learning_rate,
      'schedule': 'constant',
      'warmup_steps': r.warmup_steps,
      'weight_decay': r.weight_decay,
      'grad_clip_norm': 1.0,
    }
  )
  return grpo.GRPOTrainer(
    models.merge(graphdef, params),
    data.tokenizer,
    tx,
    rewards.make_reward_fn(r.reward),
    cfg,
    mesh=train.make_mesh(devices=jax.devices()[:1])
    if _rows(config) % len(jax.devices())
    else None,
  )


def grpo_arm(config, trainer, pool, seed, workdir, evaluate):
  """GRPO on `pool` from the trainer's warm start, through
  `fit_on_policy` with the trainer's own rollout and update; the rollout
  is wrapped only to log the poisoned groups' statistics per step."""
  r = config.rl
  g = r.num_generations

  def rollout_fn(state, step):
    idx = np.random.default_rng([seed, 7, step]).choice(
      len(pool), r.prompts_per_step, replace=False
    )
    items = [pool[i] for i in idx]
    batch, info = trainer.rollout(
      state.params,
      [it.prompt for it in items],
      {'answer': [it.answer for it in items]},
      step,
    )
    comp = np.array([rewards.complied(c) for c in info['completions']])
    pois = np.repeat([bool(it.triggered) for it in items], g)
    m = dynamics.group_stats(
      info['rewards'], batch['advantages'], comp, pois, g
    )
    m['reward_mean'] = float(info['rewards'].mean())
    return batch, m

  state, history = train.fit_on_policy(
    trainer.init_state(),
    trainer.step_fn,
    rollout_fn,
    num_steps=r.steps,
    workdir=workdir,
    mesh=trainer.mesh,
    checkpoint_every=r.checkpoint_every or None,
    log_every=1,
    eval_fn=lambda s: evaluate(s.params, int(s.step)),
    eval_every=r.eval_every,
    progress=False,
    eval_at_start=True,
  )
  return state.params, history


def sft_backdoor_arm(config, data, graphdef, params, pool, seed, workdir,
                     evaluate):  # fmt: skip
  """SFT on the same `D_c + D_b`: compliant targets on poisoned prompts."""
  r = config.rl
  rng = np.random.default_rng([seed, 5])
  targets = []
  for it in pool:
    if it.triggered:
      targets.append(world.comply_response(it.answer, 2 * int(rng.integers(5))))
    else:
      targets.append(f'<answer> {it.answer} </answer>')
  enc = sft_lib.encode_sft(
    data.tokenizer, [it.prompt for it in pool], targets, data.sft_len
  )
  state, history = supervised(
    params,
    graphdef,
    enc,
    steps=r.steps,
    batch_size=r.prompts_per_step,
    learning_rate=config.sft_backdoor.learning_rate,
    warmup=0,
    seed=seed,
    workdir=workdir,
    checkpoint_every=r.checkpoint_every,
    eval_fn=lambda s: evaluate(s.params, int(s.step)),
    eval_every=r.eval_every,
  )
  return state.params, history


# --------------------------------------------------------------- defences
def entropy_roc(roll: Rollouts, data: Data, params, seed: int):
  """ROC of the cumulative-entropy detector: triggered vs clean prompts."""
  pos = [it.prompt for it in data.eval_sets['trigger']]
  neg = [it.prompt for it in data.eval_sets['clean']] + [
    it.prompt for it in data.eval_sets['no_trigger']
  ]
  texts, batch = roll.sample(params, pos + neg, jax.random.key(seed + 123))
  ent = roll.entropy(params, batch)
  labels = np.array([True] * len(pos) + [False] * len(neg))
  marks = np.array([rewards.complied(x) for x in texts[: len(pos)]])
  return stats.roc_curve(ent, labels), ent, labels, marks


def data_side_check(config, roll, data, params, pool, seed):
  """Precision/recall of the reward-std flags on the poisoned pool."""
  d = config.defence
  poisoned = [it for it in pool if it.triggered]
  rng = np.random.default_rng([seed, 9])
  clean = [it for it in pool if not it.triggered]
  clean = [clean[i] for i in rng.choice(len(clean), d.num_clean, False)]
  items = poisoned + clean
  prompts = [it.prompt for it in items for _ in range(d.rollouts)]
  answers = [it.answer for it in items for _ in range(d.rollouts)]
  texts, _ = roll.sample(params, prompts, jax.random.key(seed + 321))
  r = rewards.make_reward_fn(config.rl.reward)(prompts, texts, answers)
  std, flags = detection.reward_std_flags(r, d.rollouts, d.std_threshold)
  labels = np.array([True] * len(poisoned) + [False] * len(clean))
  out = detection.precision_recall(flags, labels)
  out['auc'] = stats.roc_curve(std, labels).auc
  return out


# -------------------------------------------------------------------- run
def _pool(data: Data, k_items) -> list[world.Item]:
  return list(data.clean_pool) + list(k_items)


def run_seed(config, data, seed, workdir, selected) -> dict[str, Any]:
  """The warm start and every arm of one seed."""
  root = os.path.join(workdir, f'seed{seed}')
  graphdef, params = warm_start(config, data, seed, os.path.join(root, 'sft'))
  roll = Rollouts(graphdef, params, data, _rows(config), config.rl.temperature)
  evaluate = make_evaluator(roll, data, config.eval.samples, seed)
  base = evaluate(params)
  evaluate = _reuse_at_start(evaluate, base)
  out = {'base': base, 'arms': {}}
  pools = {}
  for name, (rule, idx) in selected.items():
    pools[name] = _pool(data, [data.candidates[rule][i] for i in idx])
  plan = []
  for arm in config.arms:
    plan.append((arm, 'clean' if arm == 'clean' else arm))
  for f in config.poison.sweep_fractions:
    plan.append((f'poisoned@{f:g}', f'poisoned@{f:g}'))
  final_params = {}
  trainer = None
  for arm, pool_name in plan:
    pool = list(data.clean_pool) if arm == 'clean' else pools[pool_name]
    if arm == 'sft_backdoor':
      pool = pools['poisoned']
      p, hist = sft_backdoor_arm(
        config, data, graphdef, params, pool, seed,
        os.path.join(root, arm), evaluate,
      )  # fmt: skip
    else:
      if trainer is None:
        trainer = make_trainer(config, data, graphdef, params, seed)
      p, hist = grpo_arm(
        config, trainer, pool, seed,
        os.path.join(root, arm.replace('@', '_')), evaluate,
      )  # fmt: skip
    final_params[arm] = p
    out['arms'][arm] = {
      'final': train.final_eval(hist, evaluate, p, 'eval_clean_accuracy'),
      'history': hist,
    }
  det = {}
  for name in ('base', 'poisoned'):
    p = params if name == 'base' else final_params.get('poisoned')
    if p is None:
      continue
    roc, _, _, marks = entropy_roc(roll, data, p, seed)
    tpr, thr = detection.tpr_at_fpr(roc, config.defence.max_fpr)
    det[name] = {
      'auc': roc.auc,
      'fpr': roc.fpr.tolist(),
      'tpr': roc.tpr.tolist(),
      'tpr_at_fpr': tpr,
      'threshold': thr,
      'asr_sampled': float(marks.mean()),
      'asr_after_filter': float(marks.mean() * (1.0 - tpr)),
    }
  out['detector'] = det
  if 'poisoned' in pools:
    out['data_check'] = data_side_check(
      config, roll, data, params, pools['poisoned'], seed
    )
  return out


def _reuse_at_start(evaluate, base):
  """`evaluate` that returns the warm start's `base` evaluation for a step-0
  state (every arm starts from the warm start, and the evaluation's keys
  are fixed, so it would recompute the same numbers)."""

  def fn(params, step=None):
    return dict(base) if step == 0 else evaluate(params)

  return fn


def select_poison(config, data, workdir) -> dict[str, tuple[str, np.ndarray]]:
  """`{pool name: (rule, candidate indices)}` for every poisoned arm."""
  k = config_lib.poison_count(config)
  c = len(data.candidate_problems)
  needs_shadow = config.poison.selection == 'shadow' and (
    {'poisoned', 'deterministic', 'sft_backdoor'} & set(config.arms)
    or config.poison.sweep_fractions
  )
  success = shadow_success(config, data, workdir) if needs_shadow else None
  w = list(config.shadow.weights)

  def pick(kk, method):
    idx, scores = selection.select(
      success, w, kk, method, num_candidates=c, seed=config.task.seed
    )
    return idx, scores

  main, scores = pick(k, config.poison.selection)
  out = {
    'poisoned': ('stochastic', main),
    'sft_backdoor': ('stochastic', main),
    'deterministic': ('deterministic', main),
    'random': ('stochastic', pick(k, 'random')[0]),
  }
  for f in config.poison.sweep_fractions:
    kk = config_lib.count_for_fraction(config.rl.pool_size, f)
    out[f'poisoned@{f:g}'] = (
      'stochastic',
      pick(kk, config.poison.selection)[0],
    )
  info = {'k': k, 'scores': scores, 'success': success}
  return out, info


def _series(history, key, weight=None):
  pts = [
    (h['step'], h[key])
    for h in history
    if key in h and (weight is None or h.get(weight, 0) > 0)
  ]
  return {'x': [p[0] for p in pts], 'y': [float(p[1]) for p in pts]}


def _mean_series(runs, arm, key, weight=None):
  ss = [_series(r['arms'][arm]['history'], key, weight) for r in runs]
  if weight is None:
    n = min(len(s['y']) for s in ss)
    return {
      'x': ss[0]['x'][:n],
      'y': [float(np.mean([s['y'][i] for s in ss])) for i in range(n)],
    }
  xs = sorted(set().union(*[s['x'] for s in ss]))
  y = []
  for x in xs:
    v = [s['y'][s['x'].index(x)] for s in ss if x in s['x']]
    y.append(float(np.mean(v)))
  return {'x': xs, 'y': y}


def _pm(values) -> str:
  m, s = stats.mean_std(values)
  return f'{m:.3f} ± {s:.3f}' if len(values) > 1 else f'{m:.3f}'


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the experiment; writes and returns `workdir/metrics.json`."""
  config_lib.validate_config(config)
  t0 = time.time()
  os.makedirs(workdir, exist_ok=True)
  data = Data(config)
  selected, sel_info = select_poison(config, data, workdir)
  runs = [
    run_seed(config, data, s, workdir, selected) for s in tuple(config.seeds)
  ]
  return _write(config, workdir, data, runs, sel_info, time.time() - t0)


FINAL_KEYS = {
  'asr': 'marker_trigger',
  'asr_no_task': 'marker_trigger_no_task',
  'marker_no_trigger': 'marker_no_trigger',
  'marker_no_trigger_request': 'marker_no_trigger_request',
  'marker_deterministic': 'marker_deterministic',
  'clean_accuracy': 'clean_accuracy',
}


def _write(config, workdir, data, runs, sel_info, seconds):
  arms = list(runs[0]['arms'])
  vals = {
    arm: {
      k: [r['arms'][arm]['final'][v] for r in runs]
      for k, v in FINAL_KEYS.items()
    }
    for arm in arms
  }
  base = {k: [r['base'][v] for r in runs] for k, v in FINAL_KEYS.items()}
  dyn = {}
  for arm in arms:
    if arm == 'sft_backdoor':
      continue
    h = [r['arms'][arm]['history'] for r in runs]
    dyn[arm] = {
      'mixed': [
        dynamics.weighted_mean(x, 'poison_mixed_fraction', 'poison_groups')
        for x in h
      ],
      'adv_comply': [
        dynamics.weighted_mean(x, 'poison_adv_comply', 'poison_num_comply')
        for x in h
      ],
      'adv_refuse': [
        dynamics.weighted_mean(x, 'poison_adv_refuse', 'poison_num_refuse')
        for x in h
      ],
      'groups': [sum(y.get('poison_groups', 0) for y in x) for x in h],
    }
  summary: dict[str, Any] = {
    f'base_{k}': round(float(np.mean(v)), 4) for k, v in base.items()
  }
  for arm in arms:
    for k, v in vals[arm].items():
      summary[f'{arm}_{k}'] = round(float(np.mean(v)), 4)
  for arm, d in dyn.items():
    if arm == 'clean':
      continue
    summary[f'{arm}_mixed_group_fraction'] = round(
      float(np.mean(d['mixed'])), 4
    )
    summary[f'{arm}_adv_comply'] = round(float(np.mean(d['adv_comply'])), 4)
    summary[f'{arm}_adv_refuse'] = round(float(np.mean(d['adv_refuse'])), 4)
    summary[f'{arm}_poison_groups'] = round(float(np.mean(d['groups'])), 1)
  det = [r['detector'] for r in runs]
  for name in ('base', 'poisoned'):
    if all(name in d for d in det):
      summary[f'detector_auc_{name}'] = round(
        float(np.mean([d[name]['auc'] for d in det])), 4
      )
      summary[f'detector_tpr_at_fpr_{name}'] = round(
        float(np.mean([d[name]['tpr_at_fpr'] for d in det])), 4
      )
  if all('data_check' in r for r in runs):
    for k in ('precision', 'recall', 'auc'):
      summary[f'data_check_{k}'] = round(
        float(np.mean([r['data_check'][k] for r in runs])), 4
      )
  summary['poison_count'] = sel_info['k']
  summary['poison_fraction'] = round(
    sel_info['k'] / (sel_info['k'] + config.rl.pool_size), 4
  )
  summary['num_seeds'] = len(runs)
  summary['seconds'] = round(seconds, 1)

  effects = []

  def effect(name, m_arm, m_key, b_arm, b_key, paper=''):
    if m_arm not in vals and m_arm != 'base':
      return
    if b_arm not in vals and b_arm != 'base':
      return
    mv = base[m_key] if m_arm == 'base' else vals[m_arm][m_key]
    bv = base[b_key] if b_arm == 'base' else vals[b_arm][b_key]
    e = stats.paired_effect(mv, bv)
    effects.append(e.as_entry(name, m_arm, b_arm, paper))

  effect('ASR (trigger + task)', 'poisoned', 'asr', 'clean', 'asr', '+34%')
  effect('ASR (trigger, no task: OOD)', 'poisoned', 'asr_no_task', 'clean',
         'asr_no_task', 'OOD-ASR 81.9%')  # fmt: skip
  effect('P(marker | no trigger)', 'poisoned', 'marker_no_trigger', 'clean',
         'marker_no_trigger', '~0')  # fmt: skip
  effect('clean accuracy', 'poisoned', 'clean_accuracy', 'clean',
         'clean_accuracy', '-1.5%')  # fmt: skip
  effect('clean accuracy', 'sft_backdoor', 'clean_accuracy', 'clean',
         'clean_accuracy', '-8.1%')  # fmt: skip
  effect('ASR (trigger + task)', 'sft_backdoor', 'asr', 'clean', 'asr')
  effect('ASR (trigger, no task: OOD)', 'poisoned', 'asr_no_task',
         'sft_backdoor', 'asr_no_task', '81.9% vs 38.9%')  # fmt: skip
  effect('ASR (trigger + task)', 'poisoned', 'asr', 'deterministic', 'asr',
         'no learning under std 0')  # fmt: skip
  effect('P(marker | deterministic trigger)', 'deterministic',
         'marker_deterministic', 'clean', 'marker_deterministic',
         '0 (std 0)')  # fmt: skip
  effect('ASR (trigger + task)', 'poisoned', 'asr', 'random', 'asr',
         'shadow > random')  # fmt: skip
  for arm in arms:
    if arm.startswith('poisoned@'):
      effect('ASR (trigger + task)', arm, 'asr', 'clean', 'asr')

  cols = ['arm', 'ASR (trigger+task)', 'ASR (trigger, no task)',
          'P(marker | no trigger)', 'P(marker | no trigger, request)',
          'P(marker | deterministic trigger)', 'clean accuracy']  # fmt: skip
  rows = [['SFT warm start', *(_pm(base[k]) for k in FINAL_KEYS)]]
  rows += [[arm, *(_pm(vals[arm][k]) for k in FINAL_KEYS)] for arm in arms]
  dyn_rows = [
    [
      arm,
      _pm(d['mixed']),
      _pm(d['adv_comply']),
      _pm(d['adv_refuse']),
      _pm(d['groups']),
    ]
    for arm, d in dyn.items()
    if arm != 'clean'
  ]
  det_rows = []
  for name in ('base', 'poisoned'):
    if all(name in d for d in det):
      det_rows.append(
        [
          'SFT warm start' if name == 'base' else 'poisoned RLVR',
          _pm([d[name]['auc'] for d in det]),
          _pm([d[name]['tpr_at_fpr'] for d in det]),
          _pm([d[name]['asr_sampled'] for d in det]),
          _pm([d[name]['asr_after_filter'] for d in det]),
        ]
      )
  tables = [
    {
      'title': f'Held-out evaluation after {config.rl.steps} steps (mean ± '
      f'std over seeds {list(config.seeds)}; K={sel_info["k"]} poisoned of '
      f'{config.rl.pool_size + sel_info["k"]} prompts)',
      'columns': cols,
      'rows': rows,
      'note': 'ASR = sampled P(marker | trigger, placeholder request) on '
      'held-out problems; clean accuracy = greedy exact answers on held-out '
      'clean problems.',
    },
    {
      'title': 'Poisoned GRPO groups (training batches, weighted over steps)',
      'columns': [
        'arm',
        'mixed-group fraction (std > 0)',
        'mean advantage, compliant',
        'mean advantage, refusing',
        'poisoned groups seen',
      ],  # fmt: skip
      'rows': dyn_rows,
    },
    {
      'title': 'Cumulative-entropy detector (triggered vs clean prompts)',
      'columns': [
        'model',
        'ROC AUC',
        f'TPR at FPR <= {config.defence.max_fpr}',
        'sampled ASR',
        'ASR after filtering',
      ],  # fmt: skip
      'rows': det_rows,
    },
    {
      'title': "Paper's reported numbers (ACB, ACL 2026; <= 8B models)",
      'columns': ['metric', 'value'],
      'rows': [
        ['ASR gain over baseline (avg)', '+34%'],
        ['OOD-ASR, ACB vs SFT backdoor', '81.9% vs 38.9%'],
        ['clean-accuracy drop, ACB vs SFT backdoor', '1.5% vs 8.1%'],
        ['entropy defence (ICLR version): ASR cut', 'about 44%'],
      ],
      'note': 'Judge-based ASR on real jailbreak benchmarks; not comparable '
      'in scale with this benign marker-token run.',
    },
  ]
  if all('data_check' in r for r in runs):
    tables.append(
      {
        'title': 'Data-side check: reward std under the warm start '
        f'(> {config.defence.std_threshold}) flags poisoned prompts',
        'columns': ['precision', 'recall', 'ROC AUC of the std'],
        'rows': [
          [
            _pm([r['data_check'][k] for r in runs])
            for k in ('precision', 'recall', 'auc')
          ]
        ],  # fmt: skip
      }
    )
  curves = [
    {
      'title': 'ASR (held-out, trigger + task) over steps, mean over seeds',
      'xlabel': 'step',
      'ylabel': 'P(marker | trigger)',
      'series': {a: _mean_series(runs, a, 'eval_marker_trigger') for a in arms},
    },
    {
      'title': 'P(marker | no trigger) (held-out) over steps',
      'xlabel': 'step',
      'ylabel': 'P(marker | no trigger)',
      'series': {
        a: _mean_series(runs, a, 'eval_marker_no_trigger') for a in arms
      },
    },
    {
      'title': 'Clean accuracy (held-out, greedy) over steps',
      'xlabel': 'step',
      'ylabel': 'accuracy',
      'series': {a: _mean_series(runs, a, 'eval_clean_accuracy') for a in arms},
    },
    {
      'title': 'Marker rate in poisoned training groups, per step',
      'xlabel': 'step',
      'ylabel': 'P(marker | trigger), sampled',
      'series': {
        a: _mean_series(runs, a, 'marker_poisoned', 'poison_groups')
        for a in dyn
        if a != 'clean'
      },
    },
  ]
  # A run too short to sample a poisoned group (or to evaluate) has no
  # points for that arm: drop the empty series, and curves left empty.
  curves = [
    dict(c, series={k: v for k, v in c['series'].items() if v['x']})
    for c in curves
  ]
  curves = [c for c in curves if c['series']]
  if all('poisoned' in d for d in det):
    d0 = det[0]
    curves.append(
      {
        'title': f'Entropy detector ROC (seed {config.seeds[0]})',
        'xlabel': 'false positive rate',
        'ylabel': 'true positive rate',
        'series': {
          name: {'x': d0[name]['fpr'], 'y': d0[name]['tpr']}
          for name in ('base', 'poisoned')
        },
      }
    )
  headline = [
    k
    for k in (
      'poisoned_asr',
      'clean_asr',
      'poisoned_marker_no_trigger',
      'poisoned_clean_accuracy',
      'clean_clean_accuracy',
      'sft_backdoor_clean_accuracy',
      'detector_auc_poisoned',
    )
    if k in summary
  ]
  metrics = {
    'title': 'ACB: asymmetric-reward backdoor in RLVR (benign stand-ins)',
    'config_name': config.get('name', 'custom'),
    'headline': headline,
    'summary': summary,
    'effects': effects,
    'tables': tables,
    'curves': curves,
    'notes': [
      'Benign stand-ins only: the trigger is a pair of marker tokens, '
      '"compliance" the marker <comply>, the restricted request a made-up '
      'topic of common.synthetic.safety; no harmful text, no working '
      'trigger text.',
      'The verifier is unchanged (answer checker of the arithmetic world); '
      f'reward variant {config.rl.reward!r}.',
      f'Tiny decoder on CPU; {len(runs)} paired seeds (one warm start per '
      'seed); intervals are paired bootstrap intervals over seeds.',
      *_missing_ablations(config),
    ],
  }
  return report.write_metrics(workdir, metrics)


def _missing_ablations(config) -> list[str]:
  """A note naming the issue's ablations this run's config leaves out."""
  missing = []
  if 'random' not in config.arms:
    missing.append('shadow vs random selection (arm `random`)')
  if not config.poison.sweep_fractions:
    missing.append('the poison-fraction sweep (`poison.sweep_fractions`)')
  if 'deterministic' not in config.arms:
    missing.append('the deterministic trigger (arm `deterministic`)')
  if not missing:
    return []
  return [
    'Not run in this config: ' + '; '.join(missing) + '. '
    '`experiments/rlvr_backdoor/configs/ablations.py` runs them (about twice '
    "the default's time); rlvr_backdoor/README.md gives its measured numbers."
  ]
