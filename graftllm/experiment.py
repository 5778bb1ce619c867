"""GraftLLM experiment: SkillPacks of two fine-tuned skills, fused by routing.

Per seed (same task world; the seed sets the initialisation and data order):

1. A tiny base LM (`common.models`) is fine-tuned with `common.train.fit`
   on a *base* set: half of the safety world's one-digit sums and half of
   its one-hop knowledge questions (it learns the answer format and those
   items).
2. Two copies are fine-tuned from it: task `arith` on the other sums, task
   `know` on the other knowledge questions (full fine-tuning: the ceiling);
   optionally followed by DPO (`common.rl.preference`) with chosen = the
   fine-tuned model's correct answers and rejected = the base model's wrong
   ones. A third copy fine-tunes `arith` then `know` in sequence (the
   continual-learning baseline).
3. Deltas -> SkillPacks (`graftllm.compress`, calibration Hessians from the
   fine-tuned model's activations on its task), written to disk and read
   back (`graftllm.skillpack`); task score (greedy exact match on the
   task's items) vs bits per delta parameter over a sweep of beta, bit
   groups and alpha; module-aware vs uniform compression; GPTQ vs RTN.
4. Fusion of both packs: explicit routing (task id), implicit routing (a
   router on mean-pooled prompt embeddings, trained on the tasks' prompts,
   scored on the base set's prompts, which it never saw), vs Task
   Arithmetic, TIES and DARE merges of the full deltas.
5. Continual learning: pack A, then add pack B: A's routed parameters and
   answers must be bit-identical; removing A must give the base model's
   answers; forgetting vs sequential fine-tuning.

Effects over paired seeds use `common.stats.paired_effect`.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from common import metrics as metrics_lib
from common import models
from common import optim
from common import report
from common import schema
from common import stats
from common import train
from common.rl import preference
from common.synthetic import safety
from common.train import lm_eval
from common.train import sft as sft_lib
from common.train import sft_world
from graftllm import compress
from graftllm import delta as delta_lib
from graftllm import fusion
from graftllm import lora as lora_lib
from graftllm import merging
from graftllm import quant
from graftllm import router as router_lib
from graftllm import skillpack

TASKS = ('arith', 'know')
# Ablations of the main config: name -> CompressionConfig overrides.
ABLATIONS = {
  'uniform': {'mode': 'uniform'},
  'rtn': {'quantizer': 'rtn'},
  'no_act_order': {'act_order': False},
}
CAPTURE_SITE = {
  'q_proj': 'attn_in',
  'k_proj': 'attn_in',
  'v_proj': 'attn_in',
  'o_proj': 'attn_out',
  'gate_proj': 'mlp_in',
  'up_proj': 'mlp_in',
  'down_proj': 'mlp_hidden',
}
PAPER = {
  'sft_mmlu_gap_to_full_ft': 'within 1% (Llama-3.1-8B-I, SFT)',
  'bits_per_param_released': 1.13,
  'explicit_fusion_vs_best_merge_lc_win': '+8.07 pts (AlpacaEval 2 LC)',
}


# ----------------------------------------------------------------- config


def _bit_groups_check(field, value):
  try:
    compress.check_bit_groups(tuple(tuple(g) for g in value), field, False)
  except (ValueError, TypeError) as e:
    schema.fail(field, value, str(e))


def _optional_bit_groups_check(field, value):
  if value:
    _bit_groups_check(field, value)


def _unit(field, value):
  schema.number(0.0, 1.0, open_low=True)(field, value)


def _sweep_groups(field, value):
  if not isinstance(value, dict) or not value:
    schema.fail(field, value, 'a non-empty dict {name: bit groups}')
  for k, v in value.items():
    _bit_groups_check(f'{field}.{k}', v)


def _stage(steps_min: int = 1):
  return {
    'steps': schema.integer(steps_min),
    'batch_size': schema.integer(1),
    'learning_rate': schema.number(0.0, open_low=True),
    'warmup_steps': schema.integer(0),
  }


FIELDS = {
  'name': schema.string(),
  'seeds': schema.seeds(),
  'checkpoint_every': schema.integer(0),
  'task': {
    'seed': schema.integer(0),
    'num_knowledge': schema.integer(4),
    'num_arithmetic': schema.integer(4, 80),
  },
  'model': models.check_spec,
  'base': _stage(),
  'finetune': _stage(),
  'dpo': {**_stage(0), 'beta': schema.number(0.0, open_low=True)},
  'compression': {
    'alpha': _unit,
    'attn_beta': _unit,
    'mlp_beta': _unit,
    'mlp_rank': schema.integer(0),
    'attn_rank': schema.integer(0),
    'mlp_bit_groups': _bit_groups_check,
    'attn_bit_groups': _optional_bit_groups_check,
    'group_size': schema.integer(1),
    'damp': schema.number(0.0),
    'act_order': schema.boolean(),
  },
  'sweep': {
    'betas': schema.sequence(_unit),
    'alphas': schema.sequence(_unit),
    'bit_groups': _sweep_groups,
    'ablations': schema.names(tuple(ABLATIONS), empty_ok=True),
  },
  'merge': {
    'ta_lambda': schema.number(0.0, open_low=True),
    'ties_density': _unit,
    'ties_lambda': schema.number(0.0, open_low=True),
    'dare_p': schema.number(0.0, 1.0, open_high=True),
  },
  'router': {
    'hidden': schema.integer(1),
    'steps': schema.integer(1),
    'learning_rate': schema.number(0.0, open_low=True),
  },
  'lora': {
    'enabled': schema.boolean(),
    'learning_rate': schema.number(0.0, open_low=True),
    'alpha': schema.number(0.0, open_low=True),
  },
  'calibration_samples': schema.integer(1),
}


def validate_config(config) -> None:
  """`common.schema` checks of `config`, then the compression cross-checks.

  Raises:
    common.schema.ConfigError: naming the dotted field, the value and what
      is allowed.
  """
  schema.validate(config, FIELDS, experiment='graftllm')
  try:
    compression_config(config.compression)
  except ValueError as e:
    schema.fail('compression', config.compression.to_dict(), str(e))


def compression_config(c, **overrides) -> compress.CompressionConfig:
  """`CompressionConfig` from `config.compression` plus overrides."""
  d = dict(c.to_dict() if hasattr(c, 'to_dict') else c)
  d['mlp_bit_groups'] = tuple(tuple(g) for g in d['mlp_bit_groups'])
  d['attn_bit_groups'] = tuple(tuple(g) for g in d['attn_bit_groups'])
  d.update(overrides)
  return compress.CompressionConfig(**d)


# ------------------------------------------------------------------ tasks


def build_tasks(config):
  """`(task, sets)`: the safety world (for its tokenizer) and the example
  lists `base`, `arith`, `know`."""
  t = config.task
  world = safety.build(
    safety.SafetyTaskConfig(
      seed=t.seed,
      num_knowledge=t.num_knowledge,
      num_arithmetic=t.num_arithmetic,
      num_topics=1,
    )
  )
  know = [e for e in world.general if e.kind == 'knowledge']
  arith = [e for e in world.general if e.kind == 'arithmetic']
  hk, ha = len(know) // 2, len(arith) // 2
  sets = {
    'base': know[:hk] + arith[:ha],
    'arith': arith[ha:],
    'know': know[hk:],
  }
  return world, sets


def make_scorer(graphdef, encoded, eos_id: int, max_new: int):
  """`score(params) -> {set: [n] bool}` greedy exact match per example.

  `score.generate(params)` also returns the greedy tokens and their mask.
  """
  names = list(encoded)
  sizes = [len(encoded[n]['prompt']) for n in names]
  cat = {
    k: np.concatenate([encoded[n][k] for n in names]) for k in lm_eval.EVAL_KEYS
  }

  @jax.jit
  def run(params, prompt, prompt_mask, target, target_mask):
    out = lm_eval.decode(
      graphdef,
      params,
      prompt,
      prompt_mask,
      jax.random.key(0),
      max_new,
      0.0,
      eos_id,
    )
    ok = lm_eval.matches(out.tokens, target, target_mask)
    return ok, out.tokens, out.mask

  def generate(params):
    """`{set: (ok [n], tokens [n, N], mask [n, N])}`."""
    outs = [
      np.asarray(x) for x in run(params, *(cat[k] for k in lm_eval.EVAL_KEYS))
    ]
    res, start = {}, 0
    for n, size in zip(names, sizes, strict=True):
      res[n] = tuple(x[start : start + size] for x in outs)
      start += size
    return res

  def score(params) -> dict[str, np.ndarray]:
    return {k: v[0] for k, v in generate(params).items()}

  score.generate = generate
  return score


# --------------------------------------------------------------- training


def _optimizer(s):
  warmup = min(s.warmup_steps, s.steps)
  return optim.make_optimizer(
    {
      'name': 'adamw',
      'learning_rate': s.learning_rate,
      'schedule': 'warmup_cosine',
      'warmup_steps': warmup,
      'total_steps': max(s.steps, warmup + 1),
      'end_learning_rate_factor': 0.1,
      'weight_decay': 0.0,
      'grad_clip_norm': 1.0,
    }
  )


class Trainer:
  """The jitted pieces shared by every seed (one compilation each).

  Args:
    config: the experiment config.
    graphdef: the model structure (the same for every seed).
  """

  def __init__(self, config, graphdef):
    self.config = config
    self.graphdef = graphdef
    loss = sft_lib.make_sft_loss(models.apply_fn(graphdef))
    self.tx, self.step = {}, {}
    for stage in ('base', 'finetune'):
      tx = _optimizer(config[stage])
      self.tx[stage] = tx
      self.step[stage] = train.make_train_step(loss, tx, has_aux=True)
    apply = models.apply_fn(graphdef)
    beta = config.dpo.beta

    def dpo_loss(params, batch, rng):
      del rng
      lp = preference.concatenated_sequence_logprobs(
        apply, params, batch['chosen'], batch['rejected']
      )
      losses = preference.dpo_loss(
        lp.chosen_logps,
        lp.rejected_logps,
        batch['ref_chosen'],
        batch['ref_rejected'],
        beta=beta,
      )
      return jnp.mean(losses), preference.preference_metrics(
        lp.chosen_logps,
        lp.rejected_logps,
        batch['ref_chosen'],
        batch['ref_rejected'],
        beta=beta,
      )

    self.tx['dpo'] = _optimizer(config.dpo) if config.dpo.steps else None
    if config.dpo.steps:
      self.step['dpo'] = train.make_train_step(
        dpo_loss, self.tx['dpo'], has_aux=True
      )
    self.pair_logps = jax.jit(
      lambda p, c, r: preference.concatenated_sequence_logprobs(apply, p, c, r)
    )

  def sft(self, params, data, stage: str, seed: int, workdir):
    """Fine-tunes `params` on encoded `data` with `fit` (resumable)."""
    s = self.config[stage]
    n = len(data['tokens'])
    keys = ('tokens', 'attention_mask', 'loss_mask')

    def batches(step):
      rng = np.random.default_rng([seed, step])
      idx = rng.choice(n, s.batch_size, replace=s.batch_size > n)
      return {k: data[k][idx] for k in keys}

    state = train.TrainState.create(params, self.tx[stage], seed)
    state, history = train.fit(
      state,
      self.step[stage],
      batches,
      num_steps=s.steps,
      workdir=workdir,
      checkpoint_every=self.config.checkpoint_every or None,
      log_every=max(1, s.steps // 5),
      progress=False,
    )
    return state.params, history

  def lora(self, base, data, rank: int, seed: int, workdir):
    """LoRA fine-tuning of `base` (frozen) at `rank`; returns the adapted
    parameters. Steps, batch and schedule are `finetune`'s; the learning
    rate and alpha are `lora`'s."""
    c = self.config
    s = ml_collections.ConfigDict(c.finetune.to_dict())
    s.learning_rate = c.lora.learning_rate
    alpha = c.lora.alpha
    sft_loss = sft_lib.make_sft_loss(models.apply_fn(self.graphdef))

    def loss(lp, batch, rng):
      return sft_loss(lora_lib.apply_lora(base, lp, alpha), batch, rng)

    n = len(data['tokens'])
    keys = ('tokens', 'attention_mask', 'loss_mask')

    def batches(step):
      rng = np.random.default_rng([seed, step])
      idx = rng.choice(n, s.batch_size, replace=s.batch_size > n)
      return {k: data[k][idx] for k in keys}

    tx = _optimizer(s)
    adapter = lora_lib.init_lora(jax.random.key(seed), base, rank)
    state = train.TrainState.create(adapter, tx, seed)
    state, _ = train.fit(
      state,
      train.make_train_step(loss, tx, has_aux=True),
      batches,
      num_steps=s.steps,
      workdir=workdir,
      checkpoint_every=c.checkpoint_every or None,
      log_every=max(1, s.steps // 5),
      progress=False,
    )
    return lora_lib.apply_lora(base, state.params, alpha)

  def dpo(self, params, chosen, rejected, seed: int, workdir):
    """DPO from `params` (also the frozen reference) on fixed pairs."""
    s = self.config.dpo
    ref = self.pair_logps(params, chosen, rejected)
    n = len(chosen['tokens'])
    data = {
      'chosen': chosen,
      'rejected': rejected,
      'ref_chosen': np.asarray(ref.chosen_logps),
      'ref_rejected': np.asarray(ref.rejected_logps),
    }

    def batches(step):
      rng = np.random.default_rng([seed, 7, step])
      idx = rng.choice(n, s.batch_size, replace=s.batch_size > n)
      return jax.tree_util.tree_map(lambda x: x[idx], data)

    state = train.TrainState.create(params, self.tx['dpo'], seed)
    state, history = train.fit(
      state,
      self.step['dpo'],
      batches,
      num_steps=s.steps,
      workdir=workdir,
      checkpoint_every=self.config.checkpoint_every or None,
      log_every=max(1, s.steps // 5),
      progress=False,
    )
    return state.params, history


def preference_pairs(data, ft_out, base_out):
  """DPO pairs on one task's items: chosen = the reference answer where the
  fine-tuned model answers it (its own greedy answer), rejected = the base
  model's greedy answer where that is wrong.

  Args:
    data: the task's encoded set (`safety.encode`).
    ft_out: `(ok, tokens, mask)` of the fine-tuned model's greedy decoding.
    base_out: the base model's.

  Returns:
    `(chosen, rejected)` batches `{'tokens', 'attention_mask',
    'loss_mask'}` `[n, P + N]`, or None when no item qualifies.
  """
  keep = np.asarray(ft_out[0]) & ~np.asarray(base_out[0])
  if not keep.any():
    return None
  p = data['prompt'][keep]
  pm = data['prompt_mask'][keep].astype(bool)
  r_len = data['target'].shape[1]
  gen = base_out[1][keep][:, :r_len]
  gm = base_out[2][keep][:, :r_len].astype(bool)
  gen = np.where(gm, gen, 0)
  chosen = {
    'tokens': data['tokens'][keep],
    'attention_mask': data['attention_mask'][keep].astype(bool),
    'loss_mask': data['loss_mask'][keep].astype(np.float32),
  }
  n = gen.shape[1]
  pad = r_len - n
  gen = np.pad(gen, ((0, 0), (0, pad)))
  gm = np.pad(gm, ((0, 0), (0, pad)))
  rejected = {
    'tokens': np.concatenate([p, gen], 1).astype(chosen['tokens'].dtype),
    'attention_mask': np.concatenate([pm, gm], 1),
    'loss_mask': np.concatenate([np.zeros_like(pm), gm], 1).astype(np.float32),
  }
  return chosen, rejected


def train_router(config, feats, labels, seed, workdir):
  """Router parameters trained with `fit` on `feats [N, D]`, `labels [N]`."""
  r = config.router
  tx = optim.make_optimizer({'name': 'adam', 'learning_rate': r.learning_rate})
  params = router_lib.init_router(
    jax.random.key(seed), feats.shape[1], r.hidden, len(TASKS)
  )
  state = train.TrainState.create(params, tx, seed)
  batch = {'feats': feats, 'labels': labels}
  state, _ = train.fit(
    state,
    train.make_train_step(router_lib.router_loss, tx, has_aux=True),
    lambda step: batch,
    num_steps=r.steps,
    workdir=workdir,
    log_every=r.steps,
    progress=False,
  )
  return state.params


# ------------------------------------------------------------ calibration


def make_capture(graphdef):
  """Jitted `capture(params, tokens, mask) -> {site: [L, B, T, d]}`."""
  sites = tuple(sorted(set(CAPTURE_SITE.values())))
  return jax.jit(models.capture_fn(graphdef, sites))


def hessians(capture, params, data, n: int) -> dict[str, np.ndarray]:
  """`{kernel path: H [d_in, d_in]}` from the model's own activations on
  the first `n` sequences of `data` (real tokens only). Only kernels get
  one: a bias (Qwen2's q/k/v projections have them) has no input side and
  is stored dense."""
  tokens = data['tokens'][:n]
  mask = data['attention_mask'][:n]
  acts = capture(params, tokens, mask)
  out = {}
  flat = delta_lib.flatten(params)
  for path in flat:
    parts = path.split('/')
    if (
      len(parts) == 5
      and parts[0] == 'layers'
      and parts[3] in CAPTURE_SITE
      and parts[4] == 'kernel'
    ):
      layer = int(parts[1])
      x = acts[CAPTURE_SITE[parts[3]]][layer]
      out[path] = np.asarray(quant.hessian(x, mask), np.float64)
  return out


# ------------------------------------------------------------------- seed


def _em(ok: np.ndarray) -> float:
  return float(np.mean(ok)) if ok.size else 0.0


def run_seed(config, seed: int, workdir: pathlib.Path, shared, sets):
  """Everything for one seed; returns a JSON-able dict of results."""
  watch = metrics_lib.Stopwatch()
  data, score, trainer = shared['data'], shared['score'], shared['trainer']
  mcfg = shared['model_config']
  if shared['hf_params'] is not None:
    init = shared['hf_params']
  else:
    _, init = models.split(models.Transformer(mcfg, rngs=nnx.Rngs(seed)))

  base, _ = trainer.sft(init, data['base'], 'base', seed, workdir / 'base')
  ft, sft_only, dpo_pairs = {}, {}, {}
  base_gen = score.generate(base) if config.dpo.steps else None
  for i, t in enumerate(TASKS):
    ft[t], _ = trainer.sft(
      base, data[t], 'finetune', seed * 100 + 1 + i, workdir / f'ft_{t}'
    )
    if config.dpo.steps:
      sft_only[t] = ft[t]
      pairs = preference_pairs(data[t], score.generate(ft[t])[t], base_gen[t])
      dpo_pairs[t] = 0 if pairs is None else len(pairs[0]['tokens'])
      if pairs is not None:
        ft[t], _ = trainer.dpo(
          ft[t], *pairs, seed * 100 + 11 + i, workdir / f'dpo_{t}'
        )
  seq, _ = trainer.sft(
    ft['arith'],
    data['know'],
    'finetune',
    seed * 100 + 2,
    workdir / 'seq_arith_know',
  )

  def ems(p) -> dict[str, float]:
    return {k: _em(v) for k, v in score(p).items()}

  res: dict[str, Any] = {
    'base': ems(base),
    'ft': {t: ems(ft[t]) for t in TASKS},
    'seq': ems(seq),
  }
  if config.dpo.steps:
    res['sft_only'] = {t: ems(sft_only[t]) for t in TASKS}
    res['dpo_pairs'] = dpo_pairs
  deltas = {t: delta_lib.extract_delta(base, ft[t]) for t in TASKS}
  hess = {
    t: hessians(shared['capture'], ft[t], data[t], config.calibration_samples)
    for t in TASKS
  }
  lib_probe = fusion.SkillLibrary(base)

  def make_pack(t, cfg, name=None):
    modules = compress.compress(deltas[t], cfg, hess[t])
    return skillpack.SkillPack(name or t, modules, {'task': t})

  def pack_score(pack, t):
    lib = fusion.SkillLibrary(base)
    lib.add(pack, t)
    return _em(score(lib.params_for({t: 1.0}))[t])

  # Main config: pack, save, load back, score.
  main_cfg = compression_config(config.compression)
  packs, files = {}, {}
  pack_dir = workdir / 'packs'
  pack_dir.mkdir(parents=True, exist_ok=True)
  for t in TASKS:
    pk = make_pack(t, main_cfg)
    path = pack_dir / f'{t}.safetensors'
    files[t] = skillpack.save(pk, path)
    packs[t] = skillpack.load(path)
  res['pack'] = {
    t: {
      'em': pack_score(packs[t], t),
      'bits_per_param': packs[t].bits_per_param(),
      'bytes': packs[t].nbytes(),
      'file_bytes': files[t],
      'bytes_by_kind': packs[t].nbytes(by_kind=True),
      'ranks': packs[t].ranks(),
    }
    for t in TASKS
  }
  del lib_probe

  # LoRA at the pack's byte size (fine-tuned from the base model).
  if config.lora.enabled:
    res['lora'] = {}
    for i, t in enumerate(TASKS):
      budget = res['pack'][t]['bytes']
      rank = lora_lib.rank_for_bytes(base, budget)
      adapted = trainer.lora(
        base, data[t], rank, seed * 100 + 21 + i, workdir / f'lora_{t}'
      )
      nbytes = lora_lib.adapter_bytes(base, rank)
      res['lora'][t] = {
        'em': _em(score(adapted)[t]),
        'rank': rank,
        'bytes': nbytes,
        'bits_per_param': 8.0 * nbytes / packs[t].num_params(),
      }

  # Sweep: one knob at a time around the main config.
  c = config.compression
  variants = []
  for b in config.sweep.betas:
    variants.append(('beta', b, {'attn_beta': b, 'mlp_beta': b}))
  for name, groups in config.sweep.bit_groups.items():
    g = tuple(tuple(x) for x in groups)
    variants.append(('bits', name, {'mlp_bit_groups': g}))
  for a in config.sweep.alphas:
    variants.append(('alpha', a, {'alpha': a}))
  for name in config.sweep.ablations:
    variants.append((name, name, ABLATIONS[name]))
  sweep = []
  for knob, value, over in variants:
    cfg = compression_config(c, **over)
    row = {'knob': knob, 'value': value, 'em': {}, 'bits': {}}
    for t in TASKS:
      pk = make_pack(t, cfg)
      row['em'][t] = pack_score(pk, t)
      row['bits'][t] = pk.bits_per_param()
    sweep.append(row)
  res['sweep'] = sweep

  # Fusion: routing vs merges (scores on both tasks).
  lib = fusion.SkillLibrary(base)
  for t in TASKS:
    lib.add(packs[t], t)
  explicit = fusion.ExplicitRouter({t: t for t in TASKS})
  routed = {t: score(lib.params_for(explicit.weights(t))) for t in TASKS}
  fus: dict[str, dict[str, float]] = {
    'explicit routing': {t: _em(routed[t][t]) for t in TASKS}
  }
  # Implicit: router on mean-pooled base embeddings of prompts.
  emb = delta_lib.flatten(base)['embed/embedding']
  feats = {
    k: np.asarray(
      router_lib.pooled_embeddings(
        emb, data[k]['prompt'], data[k]['prompt_mask']
      )
    )
    for k in ('base', *TASKS)
  }
  x = np.concatenate([feats[t] for t in TASKS])
  y = np.concatenate(
    [np.full(len(feats[t]), i, np.int32) for i, t in enumerate(TASKS)]
  )
  rparams = train_router(config, x, y, seed, workdir / 'router')
  kinds = np.array(
    [0 if e.kind == 'arithmetic' else 1 for e in sets['base']], np.int32
  )
  heldout_acc = float(
    np.mean(np.asarray(router_lib.top1(rparams, feats['base'])) == kinds)
  )
  fus['implicit routing'] = {}
  for i, t in enumerate(TASKS):
    choice = np.asarray(router_lib.top1(rparams, feats[t]))
    ok = np.where(choice == 0, routed['arith'][t], routed['know'][t])
    del i
    fus['implicit routing'][t] = _em(ok)
  m = config.merge
  dl = [deltas[t] for t in TASKS]
  merges = {
    'Task Arithmetic': merging.task_arithmetic(dl, m.ta_lambda),
    'TIES': merging.ties(dl, m.ties_density, m.ties_lambda),
    'DARE': merging.dare(dl, m.dare_p, m.ta_lambda, seed=seed),
  }
  for name, d in merges.items():
    s = score(delta_lib.add_delta(base, d))
    fus[name] = {t: _em(s[t]) for t in TASKS}
  res['fusion'] = fus
  res['router_heldout_accuracy'] = heldout_acc

  # Continual learning: A, then add B; remove A.
  cl = fusion.SkillLibrary(base)
  cl.add(packs['arith'], 'arith')
  pa1 = cl.params_for({'arith': 1.0})
  sa1 = score(pa1)
  cl.add(packs['know'], 'know')
  pa2 = cl.params_for({'arith': 1.0})
  sa2 = score(pa2)
  same_params = all(
    np.array_equal(a, b)
    for a, b in zip(
      jax.tree_util.tree_leaves(pa1),
      jax.tree_util.tree_leaves(pa2),
      strict=True,
    )
  )
  cl.remove('arith')
  s_removed = score(cl.params_for({}))
  s_base = score(base)
  res['continual'] = {
    'arith_before_b': _em(sa1['arith']),
    'arith_after_b': _em(sa2['arith']),
    'bit_identical_params': bool(same_params),
    'bit_identical_answers': bool(np.array_equal(sa1['arith'], sa2['arith'])),
    'removed_equals_base': bool(
      np.array_equal(s_removed['arith'], s_base['arith'])
    ),
    'arith_after_removal': _em(s_removed['arith']),
    'seq_ft_arith_before': res['ft']['arith']['arith'],
    'seq_ft_arith_after': res['seq']['arith'],
  }
  res['seconds'] = watch.elapsed()
  return res


# -------------------------------------------------------------------- run


def _shared(config, world, sets):
  """Encoded sets and the jitted pieces every seed reuses.

  With `config.model.hf_dir` the base model's starting point is that
  Hugging Face directory (`common.train.sft_world.load_hf`: its tokenizer
  must be the task's word tokenizer) for every seed, instead of a random
  initialisation from `config.model`.
  """
  p_len, r_len = safety.lengths(world)
  data = {k: safety.encode(world, v, p_len, r_len) for k, v in sets.items()}
  hf_params = None
  if config.model.get('hf_dir', ''):
    mcfg, graphdef, hf_params = sft_world.load_hf(config.model.hf_dir, world)
  else:
    mcfg = models.build_config(
      config.model,
      vocab_size=world.tokenizer.vocab_size,
      max_seq_len=p_len + r_len,
    )
    graphdef, _ = models.split(models.Transformer(mcfg, rngs=nnx.Rngs(0)))
  return {
    'data': data,
    'model_config': mcfg,
    'hf_params': hf_params,
    'trainer': Trainer(config, graphdef),
    'score': make_scorer(graphdef, data, world.tokenizer.eos_id, r_len),
    'capture': make_capture(graphdef),
  }


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs every seed (cached per seed); writes and returns metrics.json."""
  validate_config(config)
  watch = metrics_lib.Stopwatch()
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  world, sets = build_tasks(config)
  shared = _shared(config, world, sets)
  cache = metrics_lib.ResultCache(workdir / 'units', config)
  per_seed = []
  for seed in config.seeds:
    per_seed.append(
      cache.get_or_compute(
        f'seed{seed}',
        lambda s=seed: run_seed(config, s, workdir / f'seed{s}', shared, sets),
      )
    )
  return _write_metrics(config, workdir, per_seed, watch.elapsed(), sets)


def _mean(xs) -> float:
  return float(np.mean(xs))


def _own(res_ft) -> float:
  return _mean([res_ft[t][t] for t in TASKS])


def _write_metrics(config, workdir, runs, seconds, sets) -> dict[str, Any]:
  seeds = list(config.seeds)
  ft_own = [_own(r['ft']) for r in runs]
  base_own = [_mean([r['base'][t] for t in TASKS]) for r in runs]
  pack_own = [_mean([r['pack'][t]['em'] for t in TASKS]) for r in runs]
  pack_bits = [
    _mean([r['pack'][t]['bits_per_param'] for t in TASKS]) for r in runs
  ]

  def sweep_em(knob):
    out = []
    for r in runs:
      rows = [row for row in r['sweep'] if row['knob'] == knob]
      if not rows:
        return None
      out.append(_mean([rows[0]['em'][t] for t in TASKS]))
    return out

  ablation = {name: sweep_em(name) for name in config.sweep.ablations}
  fusion_names = list(runs[0]['fusion'])
  fus = {
    n: [_mean([r['fusion'][n][t] for t in TASKS]) for r in runs]
    for n in fusion_names
  }
  cl_after = [r['continual']['arith_after_b'] for r in runs]
  seq_after = [r['continual']['seq_ft_arith_after'] for r in runs]
  effects = []

  def effect(name, method_vals, base_vals, mname, bname, paper=''):
    e = stats.paired_effect(method_vals, base_vals)
    effects.append(e.as_entry(name, mname, bname, paper))
    return e

  e_ft = effect(
    'own-task EM: SkillPack minus full fine-tuning',
    pack_own,
    ft_own,
    'GraftLLM pack',
    'full fine-tuning',
    PAPER['sft_mmlu_gap_to_full_ft'],
  )
  ablation_names = {
    'uniform': ('module-aware minus uniform compression', 'uniform',
                'module-aware better (ablation)'),
    'rtn': ('GPTQ minus RTN (same packs otherwise)', 'RTN', ''),
    'no_act_order': ('act-order minus no act-order', 'no act-order', ''),
  }  # fmt: skip
  for name, vals in ablation.items():
    title, bname, paper = ablation_names[name]
    effect(f'own-task EM: {title}', pack_own, vals, 'GraftLLM pack', bname,
           paper)  # fmt: skip
  lora_own = None
  if config.lora.enabled:
    lora_own = [_mean([r['lora'][t]['em'] for t in TASKS]) for r in runs]
    effect(
      'own-task EM: SkillPack minus LoRA at equal bytes',
      pack_own,
      lora_own,
      'GraftLLM pack',
      'LoRA (same bytes)',
      'LoRA r=32-128 nearly collapses under DPO (ours: SFT-only LoRA)',
    )
  if config.dpo.steps:
    effect(
      'own-task EM of the full model: SFT + DPO minus SFT only',
      ft_own,
      [_own(r['sft_only']) for r in runs],
      'SFT + DPO',
      'SFT only',
      'SFT without DPO is worse',
    )
  e_fusion = {}
  for n in ('Task Arithmetic', 'TIES', 'DARE'):
    e_fusion[n] = effect(
      f'both-task EM: explicit routing minus {n}',
      fus['explicit routing'],
      fus[n],
      'explicit routing',
      n,
      PAPER['explicit_fusion_vs_best_merge_lc_win'],
    )
  effect(
    'both-task EM: implicit routing minus Task Arithmetic',
    fus['implicit routing'],
    fus['Task Arithmetic'],
    'implicit routing',
    'Task Arithmetic',
  )
  e_cl = effect(
    'task A EM after learning B: SkillPack library minus sequential FT',
    cl_after,
    seq_after,
    'GraftLLM (A routed)',
    'sequential fine-tuning',
    'almost no forgetting',
  )

  # Score vs bits curve (mean over seeds and tasks).
  def series(knob, with_main=True):
    # A knob's values, plus the main config (the centre of every sweep).
    pts = (
      {'main': list(zip(pack_bits, pack_own, strict=True))} if with_main else {}
    )
    for r in runs:
      for row in r['sweep']:
        if row['knob'] == knob:
          pts.setdefault(str(row['value']), []).append(
            (_mean(list(row['bits'].values())), _mean(list(row['em'].values())))
          )
    xy = sorted(
      (_mean([p[0] for p in v]), _mean([p[1] for p in v])) for v in pts.values()
    )
    return {'x': [p[0] for p in xy], 'y': [p[1] for p in xy]}

  lora_bits = (
    _mean(
      [_mean([r['lora'][t]['bits_per_param'] for t in TASKS]) for r in runs]
    )
    if lora_own is not None
    else None
  )
  curve = {
    'title': 'Own-task exact match vs bits per delta parameter',
    'xlabel': 'bits per delta parameter',
    'ylabel': 'exact match (mean of both tasks)',
    'series': {
      'module-aware, beta sweep': series('beta'),
      'module-aware, bit-group sweep': series('bits'),
      'module-aware, alpha sweep': series('alpha'),
      **(
        {'uniform (SVD + GPTQ everywhere)': series('uniform', with_main=False)}
        if 'uniform' in ablation
        else {}
      ),
      'full fine-tuning (fp16 delta)': {'x': [16.0], 'y': [_mean(ft_own)]},
      **(
        {"LoRA at the pack's bytes": {'x': [lora_bits], 'y': [_mean(lora_own)]}}
        if lora_own is not None
        else {}
      ),
      'base model': {'x': [0.0], 'y': [_mean(base_own)]},
    },
  }
  fig = report.plot_curve(curve, workdir / 'score_vs_bits.png')

  summary = {
    'pack_own_em': _mean(pack_own),
    'full_ft_own_em': _mean(ft_own),
    'base_own_em': _mean(base_own),
    'pack_bits_per_param': _mean(pack_bits),
    **{f'{n}_own_em': _mean(v) for n, v in ablation.items()},
    **({'lora_own_em': _mean(lora_own)} if lora_own is not None else {}),
    'explicit_routing_em': _mean(fus['explicit routing']),
    'implicit_routing_em': _mean(fus['implicit routing']),
    'task_arithmetic_em': _mean(fus['Task Arithmetic']),
    'ties_em': _mean(fus['TIES']),
    'dare_em': _mean(fus['DARE']),
    'continual_arith_after_b': _mean(cl_after),
    'seq_ft_arith_after_b': _mean(seq_after),
    'continual_bit_identical': all(
      r['continual']['bit_identical_params']
      and r['continual']['bit_identical_answers']
      for r in runs
    ),
    'removal_restores_base': all(
      r['continual']['removed_equals_base'] for r in runs
    ),
    'router_heldout_accuracy': _mean(
      [r['router_heldout_accuracy'] for r in runs]
    ),
    'num_seeds': len(seeds),
    'seconds': round(seconds, 1),
    # Compute of the seeds when they ran (a rerun reuses cached seeds).
    'seed_seconds': round(sum(r.get('seconds', 0.0) for r in runs), 1),
  }

  def ms(vals):
    m, s = stats.mean_std(vals)
    return f'{m:.3f} ± {s:.3f}'

  pack_rows = []
  labels = {
    'uniform': 'uniform compression',
    'rtn': 'GPTQ -> RTN',
    'no_act_order': 'no act-order',
  }
  rows_in = [
    ('base model', base_own),
    ('full fine-tuning (ceiling)', ft_own),
  ]
  if config.dpo.steps:
    rows_in.append(
      ('SFT only (before DPO)', [_own(r['sft_only']) for r in runs])
    )
  rows_in.append(('GraftLLM pack (module-aware)', pack_own))
  if lora_own is not None:
    ranks = sorted({r['lora'][t]['rank'] for r in runs for t in TASKS})
    rows_in.append((f"LoRA at the pack's bytes (rank {ranks})", lora_own))
  rows_in += [(labels[n], v) for n, v in ablation.items()]
  for label, vals in rows_in:
    pack_rows.append([label, ms(vals)])
  sweep_rows = []
  for i, row0 in enumerate(runs[0]['sweep']):
    em = [_mean(list(r['sweep'][i]['em'].values())) for r in runs]
    bits = [_mean(list(r['sweep'][i]['bits'].values())) for r in runs]
    sweep_rows.append([row0['knob'], str(row0['value']), ms(bits), ms(em)])
  fusion_rows = [
    [
      n,
      ms([r['fusion'][n]['arith'] for r in runs]),
      ms([r['fusion'][n]['know'] for r in runs]),
      ms(fus[n]),
    ]
    for n in fusion_names
  ]
  fusion_rows.insert(
    0,
    [
      'full FT on each task (its own model)',
      ms([r['ft']['arith']['arith'] for r in runs]),
      ms([r['ft']['know']['know'] for r in runs]),
      ms(ft_own),
    ],
  )
  r0 = runs[0]
  metrics = {
    'title': 'GraftLLM: SkillPacks, routed fusion, continual learning',
    'config_name': config.get('name', 'custom'),
    'headline': [
      'pack_own_em',
      'full_ft_own_em',
      'pack_bits_per_param',
      'explicit_routing_em',
      'task_arithmetic_em',
    ],
    'effects': effects,
    'summary': summary,
    'tables': [
      {
        'title': f'Own-task exact match ({len(seeds)} seeds, mean ± std)',
        'columns': ['model', 'exact match'],
        'rows': pack_rows,
        'note': (
          f'Pack: {_mean(pack_bits):.2f} bits per delta parameter; bytes '
          f'by kind (seed {seeds[0]}, arith): '
          f'{r0["pack"]["arith"]["bytes_by_kind"]}; file '
          f'{r0["pack"]["arith"]["file_bytes"]} B. '
          f'GraftLLM minus full FT: {e_ft.describe()}.'
        ),
      },
      {
        'title': 'Sweep around the main config (one knob at a time)',
        'columns': ['knob', 'value', 'bits per delta param', 'exact match'],
        'rows': sweep_rows,
      },
      {
        'title': 'Fusion of the two skills (exact match on each task)',
        'columns': ['method', 'arith', 'know', 'mean'],
        'rows': fusion_rows,
        'note': (
          'Routing uses the compressed packs; the merges use the full '
          'deltas. Implicit router accuracy on held-out (base-set) prompts: '
          f'{summary["router_heldout_accuracy"]:.3f}. Explicit minus TA: '
          f'{e_fusion["Task Arithmetic"].describe()}.'
        ),
      },
      {
        'title': 'Continual learning: arith, then know',
        'columns': ['', 'arith EM before', 'arith EM after know'],
        'rows': [
          [
            'GraftLLM library (arith routed)',
            ms([r['continual']['arith_before_b'] for r in runs]),
            ms(cl_after),
          ],
          [
            'sequential full fine-tuning',
            ms([r['continual']['seq_ft_arith_before'] for r in runs]),
            ms(seq_after),
          ],
        ],
        'note': (
          'Library: parameters and answers bit-identical after adding '
          f'pack B on every seed: {summary["continual_bit_identical"]}; '
          "removing pack A gives the base model's answers: "
          f'{summary["removal_restores_base"]}. {e_cl.describe()}.'
        ),
      },
      {
        'title': "Paper's numbers (Llama-3.1-8B-I; not comparable in scale)",
        'columns': ['claim', 'paper'],
        'rows': [[k, str(v)] for k, v in PAPER.items()],
      },
    ],
    'curves': [curve],
    'figures': [{'title': curve['title'], 'path': fig.name}],
    'notes': [
      'Task score is greedy exact match on the fine-tuning items of each '
      'task (the skill a pack stores), not held-out generalisation; the '
      'implicit router is scored on held-out prompts.',
      f'Sets: base {len(sets["base"])}, arith {len(sets["arith"])}, know '
      f'{len(sets["know"])} items. A tiny model on CPU: its deltas are not '
      "low-rank like an 8B model's, so bits per parameter are higher than "
      "the paper's ~1.13 at the same quality.",
      'Merges (TA/TIES/DARE) are applied to the uncompressed deltas. LoRA '
      '(attention + MLP kernels, float16 factors) is trained from the base '
      'model with the fine-tuning budget at the largest rank within the '
      "main pack's bytes.",
    ],
  }
  return report.write_metrics(workdir, metrics)
