"""ReaderLM-v2 experiment: synthesis pipeline, staged recipe, evaluation.

1. Synthetic entity pages (`pages.py`) from the knowledge world, split by
   entity. The Draft -> Refine -> Critique pipeline (rule backends; the
   drafter is `config.drafter`) runs over the train pages for Markdown and
   JSON and writes SFT-Filtered, SFT-Critique and DPO (resumable JSONL).
2. Every peer converter and the refined pipeline output are scored on the
   held-out test pages (ROUGE-L, WER/SUB/INS, Levenshtein, Damerau,
   Jaro-Winkler; JSON tree F1 and pass rate).
3. A byte-level BPE tokenizer is trained on the SFT texts (tokenizer.json),
   and per seed a tiny decoder is trained in stages, all through
   `common.train.fit` (checkpointed, resumable): SFT (CE) and, from the same
   init and batches, SFT + contrastive (SimCTG); Markdown and JSON
   specialists fine-tuned from SFT + contrastive and linearly merged; DPO
   from the merged checkpoint (reference = merged; chosen = refined,
   rejected = draft; `dpo.loss_type` picks DPO or length-normalised DPO).
   Then one self-play round: the DPO model becomes the drafter (an
   `LMBackend`), the pipeline regenerates SFT-Filtered and DPO triplets on
   the train pages, and SFT + DPO run again from the DPO model. Each stage
   is decoded greedily (repetition penalty 1.08) on the test pages, and
   scored teacher-forced on the gold Markdown (copy accuracy, NLL per
   token) with the model's attention run through zig-zag ring attention on
   a mesh of `context_parallel` devices (`readerlm.context_parallel`).
4. Real pages: the Node.js API docs, when the directory exists.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from common import metrics as metrics_lib
from common import models
from common import optim
from common import report
from common import schema
from common import stats
from common import synthetic
from common import train
from common.rl import preference
from common.tokenizers import bpe
from readerlm import backends
from readerlm import context_parallel as cp
from readerlm import converters
from readerlm import json_eval
from readerlm import metrics as md_metrics
from readerlm import objectives
from readerlm import pages as pages_lib
from readerlm import pipeline
from readerlm import prompt as prompt_lib
from readerlm import realpages
from readerlm import refine
from readerlm import roles

STAGES = ('sft', 'sft_cl', 'merged', 'dpo', 'self_play')
STAGE_NAMES = {
  'sft': 'SFT (CE)',
  'sft_cl': 'SFT + contrastive',
  'merged': '+ merge (MD, JSON specialists)',
  'dpo': '+ DPO',
  'self_play': '+ self-play round (model drafts; SFT + DPO again)',
}


def fields() -> dict[str, Any]:
  pos = schema.integer(1)
  lr = schema.number(0.0, open_low=True)
  stage = {'steps': pos, 'learning_rate': lr, 'warmup_steps': schema.integer(0)}
  return {
    'name': schema.string(),
    'seeds': schema.seeds(),
    'data_seed': schema.integer(0),
    'world': schema.dataclass_kwargs(synthetic.KnowledgeWorldConfig, seed=0),
    'pages': schema.anything(),
    'drafter': schema.choice(tuple(converters.DRAFTERS)),
    'vocab_size': schema.integer(300),
    'split_html_tags': schema.boolean(),
    'max_prompt_len': schema.integer(16),
    'max_new_tokens': pos,
    'batch_size': pos,
    'model': models.check_spec,
    'contrastive_weight': schema.number(0.0),
    'contrastive_margin': schema.number(0.0, 1.0),
    'repetition_penalty': schema.number(0.0, open_low=True),
    'sft': dict(stage),
    'specialist': dict(stage),
    'merge_weights': schema.sequence(schema.number(0.0)),
    'dpo': dict(
      stage,
      beta=schema.number(0.0, open_low=True),
      loss_type=schema.choice(preference.LOSS_TYPES),
    ),
    'self_play': {
      'pages': schema.integer(0),
      'sft_steps': schema.integer(0),
      'dpo_steps': schema.integer(0),
    },
    'context_parallel': schema.integer(0),
    'eval_pages': pos,
    'checkpoint_every': pos,
    'real': {
      'nodejs_dir': schema.string(),
      'max_pages': schema.integer(0),
    },
    'paper': schema.anything(),
  }


def validate_config(config) -> None:
  schema.validate(config, fields(), experiment='readerlm')
  try:
    pages_lib.PageConfig(**_page_kwargs(config))
  except (TypeError, ValueError) as e:
    schema.fail('pages', config.pages.to_dict(), str(e))
  w = list(config.merge_weights)
  if len(w) != 2 or abs(sum(w) - 1.0) > 1e-6:
    schema.fail('merge_weights', w, 'two weights >= 0 summing to 1 (MD, JSON)')


def _page_kwargs(config) -> dict:
  kw = dict(config.pages.to_dict())
  for k in ('sections', 'clutter'):
    if k in kw:
      kw[k] = tuple(kw[k])
  return kw


# ---------------------------------------------------------------- data


def _task_prompt(html: str, task: str) -> str:
  schema_ = pages_lib.SCHEMA if task == 'json' else None
  return prompt_lib.instruction_prompt(
    prompt_lib.clean_html(html, clean_svg=True, clean_base64=True),
    schema=schema_,
  )


def _encode_prompt(tok, user: str, max_len: int) -> list[int]:
  ids = tok.encode(prompt_lib.chat_prompt(user))
  if len(ids) > max_len:
    ids = ids[: max_len // 2] + ids[-(max_len - max_len // 2) :]
  return ids


def prompt_cut_fractions(tok, records, max_len: int) -> dict[str, float]:
  """`{task: share of the records' prompts longer than max_len tokens}`
  (those lose their middle, `_encode_prompt`)."""
  out = {}
  for task in pipeline.TASKS:
    lens = [
      len(tok.encode(prompt_lib.chat_prompt(r['prompt'])))
      for r in records
      if r['task'] == task
    ]
    out[task] = float(np.mean([n > max_len for n in lens])) if lens else 0.0
  return out


def encode_pairs(tok, prompts, responses, max_prompt_len, max_new) -> dict:
  """Right-padded `[B, P + N]` SFT batch; prompts cut like `LMBackend`."""
  b, t = len(prompts), max_prompt_len + max_new
  tokens = np.full((b, t), tok.pad_id, np.int32)
  attn = np.zeros((b, t), bool)
  loss = np.zeros((b, t), bool)
  for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
    pi = _encode_prompt(tok, p, max_prompt_len)
    ri = tok.encode(r, add_eos=True)[:max_new]
    n = len(pi) + len(ri)
    tokens[i, :n] = pi + ri
    attn[i, :n] = True
    loss[i, len(pi) : n] = True
  return {'tokens': tokens, 'attention_mask': attn, 'loss_mask': loss}


def _records_md(records, task):
  return [r for r in records if r.get('task') == task and 'error' not in r]


# ----------------------------------------------------------- evaluation


def score_markdown(
  preds: Sequence[str], golds: Sequence[str]
) -> dict[str, float]:
  rows = [
    md_metrics.markdown_scores(p, g) for p, g in zip(preds, golds, strict=True)
  ]
  return {
    k: float(np.mean([r[k] for r in rows])) for k in md_metrics.METRIC_NAMES
  }


def score_json(preds: Sequence[str], golds: Sequence[dict]) -> dict[str, float]:
  rows = [
    json_eval.json_scores(p, g, pages_lib.SCHEMA)
    for p, g in zip(preds, golds, strict=True)
  ]
  return {
    'json_f1': float(np.mean([r['f1'] for r in rows])),
    'json_pass_rate': float(np.mean([r['passed'] for r in rows])),
  }


def degeneration_rate(texts: Sequence[str], finish: Sequence[str]) -> float:
  """Share of outputs that loop (a word 4-gram 4 times) or hit max length."""
  bad = [
    refine.loops(t) or f == 'length' for t, f in zip(texts, finish, strict=True)
  ]
  return float(np.mean(bad)) if bad else 0.0


def evaluate_converters(test_pages, drafter: str) -> dict[str, dict]:
  """Every peer converter (and the refined pipeline output) on test pages."""
  out = {}
  golds = [p['markdown'] for p in test_pages]
  gold_json = [p['json'] for p in test_pages]
  refiner = backends.RuleRefiner()
  for name in converters.DRAFTERS:
    drafts = [converters.convert(name, p['html']) for p in test_pages]
    res = score_markdown(drafts, golds)
    res.update(
      score_json(
        [json.dumps(refine.markdown_to_json(d)) for d in drafts], gold_json
      )
    )
    out[name] = res
    if name == drafter:
      from readerlm import roles  # noqa: PLC0415

      refined = [
        refiner.generate(
          [{'role': 'user', 'content': roles.refine_prompt(p['html'], d)}]
        )
        for p, d in zip(test_pages, drafts, strict=True)
      ]
      res = score_markdown(refined, golds)
      res.update(
        score_json(
          [json.dumps(refine.markdown_to_json(r)) for r in refined], gold_json
        )
      )
      out[f'{name} + rule refine'] = res
  return out


def evaluate_real(config) -> tuple[dict | None, str]:
  try:
    real = realpages.load_nodejs(
      config.real.nodejs_dir, config.real.max_pages or None
    )
  except FileNotFoundError as e:
    return None, f'real pages skipped: {e}'
  if not real:
    return (
      None,
      f'real pages skipped: no .html/.md pairs in {config.real.nodejs_dir}',
    )
  out = {}
  for name in converters.DRAFTERS:
    whole, main = [], []
    for p in real:
      whole.append(converters.convert(name, p['html']))
      sub = converters.select(p['html'], 'apicontent') or p['html']
      main.append(converters.convert(name, sub))
    golds = [p['markdown'] for p in real]
    out[name] = {
      'whole': score_markdown(whole, golds),
      'apicontent': score_markdown(main, golds),
    }
  return out, f'{len(real)} Node.js pages from {config.real.nodejs_dir}'


# ------------------------------------------------------------- training


def _tx(stage_cfg):
  return optim.make_optimizer({
    'name': 'adamw', 'learning_rate': stage_cfg.learning_rate,
    'schedule': 'warmup_cosine', 'warmup_steps': stage_cfg.warmup_steps,
    'total_steps': stage_cfg.steps, 'weight_decay': 0.0, 'grad_clip_norm': 1.0,
  })  # fmt: skip


def _sft_stage(
  params,
  graphdef,
  data,
  tok,
  config,
  stage_cfg,
  seed,
  weight,
  workdir,
  mesh,
  salt,
):
  tx = _tx(stage_cfg)
  loss_fn = objectives.make_sft_loss(
    graphdef, weight, config.contrastive_margin
  )
  step_fn = train.make_train_step(loss_fn, tx, has_aux=True)

  def batches(step):
    idx = np.random.default_rng([seed, salt, step]).choice(
      len(data), config.batch_size, replace=len(data) < config.batch_size
    )
    rows = [data[i] for i in idx]
    return encode_pairs(
      tok,
      [r['prompt'] for r in rows],
      [r['response'] for r in rows],
      config.max_prompt_len,
      config.max_new_tokens,
    )

  state = train.TrainState.create(params, tx, seed)
  state, hist = train.fit(
    state, step_fn, batches, num_steps=stage_cfg.steps, workdir=workdir,
    mesh=mesh, checkpoint_every=config.checkpoint_every,
    log_every=max(1, stage_cfg.steps // 10), progress=False,
  )  # fmt: skip
  return state.params, hist


def _dpo_stage(
  params, graphdef, triplets, tok, config, seed, workdir, mesh, steps=None
):
  c = ml_collections.ConfigDict(config.dpo.to_dict())
  if steps is not None:
    c.steps = steps
  tx = _tx(c)
  loss_fn, apply = objectives.make_dpo_loss(graphdef, c.beta, c.loss_type)
  step_fn = train.make_train_step(loss_fn, tx, has_aux=True)
  enc = lambda rows, key: encode_pairs(  # noqa: E731
    tok, [r['prompt'] for r in rows], [r[key] for r in rows],
    config.max_prompt_len, config.max_new_tokens)  # fmt: skip
  chosen_all, rejected_all = enc(triplets, 'chosen'), enc(triplets, 'rejected')
  ref_c, ref_r = [], []
  for i in range(0, len(triplets), config.batch_size):
    sl = slice(i, i + config.batch_size)
    a, b = objectives.reference_logps(
      apply, params, {k: v[sl] for k, v in chosen_all.items()},
      {k: v[sl] for k, v in rejected_all.items()})  # fmt: skip
    ref_c.append(a)
    ref_r.append(b)
  ref_c, ref_r = np.concatenate(ref_c), np.concatenate(ref_r)

  def batches(step):
    idx = np.random.default_rng([seed, 5, step]).choice(
      len(triplets),
      config.batch_size,
      replace=len(triplets) < config.batch_size,
    )
    return {
      'chosen': {k: v[idx] for k, v in chosen_all.items()},
      'rejected': {k: v[idx] for k, v in rejected_all.items()},
      'ref_chosen': ref_c[idx].astype(np.float32),
      'ref_rejected': ref_r[idx].astype(np.float32),
    }

  state = train.TrainState.create(params, tx, seed)
  state, hist = train.fit(
    state, step_fn, batches, num_steps=c.steps, workdir=workdir, mesh=mesh,
    checkpoint_every=config.checkpoint_every, log_every=max(1, c.steps // 10),
    progress=False,
  )  # fmt: skip
  return state.params, hist


def copy_diagnostic(
  graphdef, params, tok, test_pages, config, ring_mesh
) -> dict[str, float]:
  """Teacher-forced scores of the gold Markdown after each test prompt.

  The prompts are encoded as in training; the forward runs with the
  model's attention through zig-zag ring attention on `ring_mesh`.

  Returns:
    `{'copy_accuracy': share of gold response tokens that are the greedy
    next-token prediction, 'response_nll': mean NLL per response token}`.
  """
  seqs, starts = [], []
  for p in test_pages:
    ids = _encode_prompt(
      tok, _task_prompt(p['html'], 'markdown'), config.max_prompt_len
    )
    resp = tok.encode(p['markdown'], add_eos=True)[: config.max_new_tokens]
    seqs.append(np.asarray(ids + resp, np.int32))
    starts.append(len(ids))
  out = cp.ring_token_logprobs(graphdef, params, seqs, starts, ring_mesh)
  n = out['tokens']
  return {
    'copy_accuracy': float(np.sum(out['copy_accuracy'] * n) / np.sum(n)),
    'response_nll': float(-np.sum(out['logprob']) / np.sum(n)),
  }


class _Replay:
  """A Draft backend that returns drafts generated beforehand in batches.

  `pipeline.synthesize` asks one page at a time; the trained model drafts
  all pages in compiled batches first (`LMBackend.generate_batch`), and
  this backend hands each prompt its draft.
  """

  def __init__(self, drafts: dict[str, str]):
    self.drafts = drafts

  def generate(self, messages, **decode) -> str:
    del decode
    key = messages[-1]['content']
    if key not in self.drafts:
      raise backends.BackendError('no pre-generated draft for this prompt')
    return self.drafts[key]


def _self_play(
  params, graphdef, backend, train_pages, tok, config, seed, workdir, mesh
):
  """One self-play round from `params`: the model drafts, data regenerated.

  Returns:
    `(params after SFT + DPO on the regenerated data, dataset sizes)`.
  """
  sp = config.self_play
  pages = train_pages[: sp.pages] if sp.pages else train_pages
  prompts = [
    roles.draft_prompt(
      prompt_lib.clean_html(
        prompt_lib.decode_html(p['html']), clean_svg=True, clean_base64=True
      )
    )
    for p in pages
  ]
  backend.update(params)
  drafts = backend.generate_batch(
    [[{'role': 'user', 'content': q}] for q in prompts]
  )
  records = pipeline.synthesize(
    pages, _Replay(dict(zip(prompts, drafts, strict=True))),
    backends.RuleRefiner(), backends.RuleCritic(),
    workdir / 'records.jsonl', task='markdown',
  )  # fmt: skip
  data = pipeline.datasets(records, seed=seed)
  pipeline.write_datasets(data, workdir)
  sizes = {k: len(v) for k, v in data.items()}
  sizes['drafts_passed'] = sum(bool(r.get('draft_passed')) for r in records)
  if data['sft_filtered'] and sp.sft_steps:
    stage = ml_collections.ConfigDict(config.specialist.to_dict())
    stage.steps = sp.sft_steps
    stage.warmup_steps = min(stage.warmup_steps, sp.sft_steps - 1)
    params, _ = _sft_stage(
      params, graphdef, data['sft_filtered'], tok, config, stage, seed,
      config.contrastive_weight, workdir / 'sft', mesh, 6,
    )  # fmt: skip
  if data['dpo'] and sp.dpo_steps:
    params, _ = _dpo_stage(
      params, graphdef, data['dpo'], tok, config, seed, workdir / 'dpo',
      mesh, steps=sp.dpo_steps,
    )  # fmt: skip
  return params, sizes


def _ring_mesh(config):
  n = jax.device_count()
  degree = config.context_parallel or n
  if degree > n:
    raise ValueError(
      f'context_parallel={degree}: more than the {n} devices JAX sees; '
      'allowed: 0 (all devices) or 1..{n} (run through experiments.run_all '
      '--cpu_devices=8 for 8 CPU devices).'
    )
  return cp.make_ring_mesh(degree)


def _evaluate_model(backend, params, test_pages) -> dict[str, float]:
  backend.update(params)
  md_msgs = [
    [{'role': 'user', 'content': _task_prompt(p['html'], 'markdown')}]
    for p in test_pages
  ]
  md = backend.generate_batch(md_msgs)
  res = score_markdown(md, [p['markdown'] for p in test_pages])
  res['degeneration'] = degeneration_rate(md, backend.last_finish)
  js_msgs = [
    [{'role': 'user', 'content': _task_prompt(p['html'], 'json')}]
    for p in test_pages
  ]
  js = backend.generate_batch(js_msgs)
  res.update(score_json(js, [p['json'] for p in test_pages]))
  res['sample'] = md[0][:400]
  return res


def _load_hf_start(config):
  """`(tokenizer, LMConfig)` of `config.model.hf_dir`, or None without one.

  The checkpoint's own tokenizer (tokenizer.json, tokenizer_config.json)
  replaces the BPE trained on the synthesised data, and its config the
  preset (`config.vocab_size` is then unused).
  """
  hf_dir = config.model.get('hf_dir', '')
  if not hf_dir:
    return None
  if not os.path.isdir(hf_dir):
    schema.fail('model.hf_dir', hf_dir, 'an existing Hugging Face directory')
  tok = bpe.BPETokenizer.load(hf_dir)
  mcfg = models.load_hf_config(hf_dir)
  need = config.max_prompt_len + config.max_new_tokens
  if mcfg.max_seq_len < need:
    schema.fail(
      'max_prompt_len',
      config.max_prompt_len,
      f'max_prompt_len + max_new_tokens <= the checkpoint context '
      f'{mcfg.max_seq_len} (max_new_tokens={config.max_new_tokens})',
    )
  if mcfg.vocab_size < tok.vocab_size:
    schema.fail(
      'model.hf_dir',
      hf_dir,
      f"a model with vocab_size >= its tokenizer's {tok.vocab_size}",
    )
  return tok, mcfg


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the experiment; writes and returns `metrics.json`."""
  validate_config(config)
  hf = _load_hf_start(config)  # before any work: a bad directory fails now
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  watch = metrics_lib.Stopwatch()
  world = synthetic.build_knowledge_world(
    synthetic.KnowledgeWorldConfig(
      seed=config.data_seed, **config.world.to_dict()
    )
  )
  pcfg = pages_lib.PageConfig(**_page_kwargs(config))
  split = pages_lib.build_pages(world, pcfg, seed=config.data_seed)
  train_pages, test_pages = split['train'], split['test'][: config.eval_pages]

  # 1. Draft -> Refine -> Critique (rule backends), both tasks.
  synth = workdir / 'synthesis'
  records = []
  for task in pipeline.TASKS:
    records = pipeline.synthesize(
      train_pages, backends.RuleDrafter(config.drafter), backends.RuleRefiner(),
      backends.RuleCritic(), synth / 'records.jsonl', task=task,
      schema=pages_lib.SCHEMA,
    )  # fmt: skip
  data = pipeline.datasets(records, seed=config.data_seed)
  pipeline.write_datasets(data, synth)
  sft_md = [r for r in data['sft_filtered'] if r['task'] == 'markdown']
  sft_js = [r for r in data['sft_filtered'] if r['task'] == 'json']
  dpo_md = [r for r in data['dpo'] if r['task'] == 'markdown']
  if not sft_md or not sft_js or not dpo_md:
    raise RuntimeError(
      f'the pipeline produced {len(sft_md)} Markdown / {len(sft_js)} JSON '
      f'SFT examples and {len(dpo_md)} DPO triplets; need some of each'
    )

  # 2. Converters on the held-out pages.
  conv = evaluate_converters(test_pages, config.drafter)

  # 3. Tokenizer and the staged recipe, per seed.
  texts = [
    prompt_lib.chat_prompt(r['prompt']) + r['response']
    for r in data['sft_filtered']
  ]
  texts += [r['rejected'] for r in dpo_md]
  if hf is None:
    tok = bpe.train_bpe(
      texts, config.vocab_size, split_html_tags=config.split_html_tags
    )
    mcfg = models.build_config(
      config.model, vocab_size=tok.vocab_size,
      max_seq_len=config.max_prompt_len + config.max_new_tokens,
    )  # fmt: skip
  else:
    tok, mcfg = hf
  tok.save(workdir / 'tokenizer')
  cut = prompt_cut_fractions(tok, data['sft_filtered'], config.max_prompt_len)
  mesh = train.make_mesh()
  ring_mesh = _ring_mesh(config)
  cache = metrics_lib.ResultCache(workdir / 'cache', config.to_dict())
  per_seed: dict[str, list[dict]] = {s: [] for s in STAGES}
  curves = {}
  sp_sizes: list[dict] = []
  backend = None
  for seed in config.seeds:

    def compute(seed=seed):
      nonlocal backend
      if hf is None:
        model = models.Transformer(mcfg, rngs=nnx.Rngs(seed))
      else:  # every seed starts from the checkpoint (seeds: data, sampling)
        model = models.load_hf(config.model.hf_dir)[1]
      graphdef, init = models.split(model)
      if backend is None:
        backend = backends.LMBackend(
          model, tok, config.max_prompt_len, config.max_new_tokens,
          config.repetition_penalty, batch_size=config.batch_size,
        )  # fmt: skip
      wd = workdir / f'seed_{seed}'
      mix = data['sft_filtered']
      out, hist = {}, {}
      t0 = time.time()
      p_sft, hist['sft'] = _sft_stage(
        init,
        graphdef,
        mix,
        tok,
        config,
        config.sft,
        seed,
        0.0,
        wd / 'sft',
        mesh,
        1,
      )
      p_cl, hist['sft_cl'] = _sft_stage(
        init,
        graphdef,
        mix,
        tok,
        config,
        config.sft,
        seed,
        config.contrastive_weight,
        wd / 'sft_cl',
        mesh,
        1,
      )
      p_md, _ = _sft_stage(
        p_cl,
        graphdef,
        sft_md,
        tok,
        config,
        config.specialist,
        seed,
        config.contrastive_weight,
        wd / 'spec_md',
        mesh,
        2,
      )
      p_js, _ = _sft_stage(
        p_cl,
        graphdef,
        sft_js,
        tok,
        config,
        config.specialist,
        seed,
        config.contrastive_weight,
        wd / 'spec_json',
        mesh,
        3,
      )
      p_merged = objectives.linear_merge(
        [p_md, p_js], list(config.merge_weights)
      )
      p_dpo, hist['dpo'] = _dpo_stage(
        p_merged, graphdef, dpo_md, tok, config, seed, wd / 'dpo', mesh
      )
      p_sp, out['self_play_data'] = _self_play(
        p_dpo, graphdef, backend, train_pages, tok, config, seed,
        wd / 'self_play', mesh,
      )  # fmt: skip
      train_s = time.time() - t0
      for name, p in (
        ('sft', p_sft),
        ('sft_cl', p_cl),
        ('merged', p_merged),
        ('dpo', p_dpo),
        ('self_play', p_sp),
      ):
        out[name] = _evaluate_model(backend, p, test_pages)
        out[name].update(
          copy_diagnostic(graphdef, p, tok, test_pages, config, ring_mesh)
        )
      out['curves'] = {
        k: [(h['step'], float(h['loss'])) for h in v if 'loss' in h]
        for k, v in hist.items()
      }
      out['train_seconds'] = train_s
      return out

    res = cache.get_or_compute(f'seed_{seed}', compute)
    for s in STAGES:
      per_seed[s].append(res[s])
    curves[seed] = res['curves']
    sp_sizes.append(res['self_play_data'])
    logging.info(
      'readerlm seed %d: %s',
      seed,
      {s: round(res[s]['rouge_l'], 3) for s in STAGES},
    )

  real, real_note = evaluate_real(config)
  return _write(
    config,
    workdir,
    watch.elapsed(),
    data,
    conv,
    per_seed,
    curves,
    real,
    real_note,
    sp_sizes,
    ring_mesh.shape[cp.AXIS],
    cut,
  )


def _mean(rows, key):
  return stats.mean_std([r[key] for r in rows])


def _write(
  config,
  workdir,
  seconds,
  data,
  conv,
  per_seed,
  curves,
  real,
  real_note,
  sp_sizes,
  ring_degree,
  cut,
):
  drafter = config.drafter
  d_rouge = conv[drafter]['rouge_l']
  n = len(config.seeds)
  effects, notes = (
    [],
    [
      'Scale: a tiny decoder trained for seconds on short synthetic pages, '
      "not the paper's 1.5B model on WebMarkdown-1M; the paper reports "
      'main-content ROUGE-L 0.84-0.86 (ReaderLM-v2) vs 0.69 (GPT-4o) on its '
      'own held-out synthetic set (blog vs paper numbers differ, see '
      'readerlm/README.md).',
      real_note,
    ],
  )
  if any(cut.values()):
    notes.append(
      f'Prompts over max_prompt_len {config.max_prompt_len} tokens lose '
      'their middle (where the main content sits): '
      + ', '.join(
        f'{v:.0%} of the {k} training prompts' for k, v in cut.items()
      )
      + '.'
    )

  def col(stage, key='rouge_l'):
    return [r[key] for r in per_seed[stage]]

  drafted = [d_rouge] * n
  # (metric, method values, baseline values, method, baseline, paper)
  comparisons = [
    ('test ROUGE-L', col('dpo'), drafted, 'trained (+DPO)',
     f'drafter {drafter}', '0.84 vs 0.69 (GPT-4o)'),
    ('test ROUGE-L', col('sft'), drafted, 'SFT (CE)',
     f'drafter {drafter}', ''),
    ('test ROUGE-L', col('self_play'), drafted, 'trained (+ self-play)',
     f'drafter {drafter}', '0.84 vs 0.69 (GPT-4o)'),
    ('test ROUGE-L', col('dpo'), col('merged'),
     f'+ DPO ({config.dpo.loss_type})', 'SFT (merged)',
     'DPO strongest stage for MD'),
    ('test ROUGE-L', col('self_play'), col('dpo'), '+ self-play round',
     '+ DPO', 'self-play iterative tuning (stage 4)'),
    ('test ROUGE-L', col('sft_cl'), col('sft'), 'SFT + contrastive',
     'SFT (CE)', ''),
    ('degeneration rate', col('sft_cl', 'degeneration'),
     col('sft', 'degeneration'), 'SFT + contrastive', 'SFT (CE)',
     'contrastive loss reduces degeneration'),
    ('JSON pass rate', col('dpo', 'json_pass_rate'),
     col('merged', 'json_pass_rate'), '+ DPO', 'SFT (merged)',
     'DPO mainly raises JSON pass rate'),
  ]  # fmt: skip
  if n >= 1:
    for metric, method, base, m_name, b_name, paper in comparisons:
      effects.append(
        stats.paired_effect(method, base).as_entry(
          metric, m_name, b_name, paper=paper
        )
      )
  cols = [
    'ROUGE-L',
    'WER',
    'SUB',
    'INS',
    'Levenshtein',
    'Damerau',
    'Jaro-Winkler',
    'JSON F1',
    'JSON pass',
  ]
  keys = [
    'rouge_l',
    'wer',
    'sub',
    'ins',
    'levenshtein',
    'damerau',
    'jaro_winkler',
    'json_f1',
    'json_pass_rate',
  ]
  conv_rows = [[name] + [r[k] for k in keys] for name, r in conv.items()]
  stage_rows = []
  for s in STAGES:
    row = [STAGE_NAMES[s]]
    for k in keys:
      m, sd = _mean(per_seed[s], k)
      row.append(f'{m:.3f} ± {sd:.3f}')
    row.append(f'{_mean(per_seed[s], "degeneration")[0]:.3f}')
    for k in ('copy_accuracy', 'response_nll'):
      m, sd = _mean(per_seed[s], k)
      row.append(f'{m:.3f} ± {sd:.3f}')
    stage_rows.append(row)
  tables = [
    {'title': 'Peer converters on held-out synthetic pages (vs gold '
               'main-content Markdown)',
     'columns': ['converter', *cols], 'rows': conv_rows,
     'note': 'paper (blog, main content): ReaderLM-v2 ROUGE-L 0.84, '
             'GPT-4o 0.69'},
    {'title': f'Tiny model by stage (mean ± std over {n} seeds)',
     'columns': ['stage', *cols, 'degeneration', 'copy acc (TF)',
                 'NLL/token (TF)'], 'rows': stage_rows,
     'note': 'TF: teacher-forced on the gold Markdown, attention through '
             f'zig-zag ring attention on {ring_degree} device(s).'},
    {'title': 'Synthesised datasets (train pages)',
     'columns': ['dataset', 'rows'],
     'rows': [[k, len(v)] for k, v in data.items()] + [
       [f'self-play {k} (mean over seeds)',
        float(np.mean([z[k] for z in sp_sizes]))]
       for k in (sp_sizes[0] if sp_sizes else {})]},
  ]  # fmt: skip
  if real is not None:
    rows = []
    for name, r in real.items():
      for part in ('whole', 'apicontent'):
        rows.append([name, part] + [r[part][k] for k in keys[:7]])
    tables.append({
      'title': 'Peer converters on real Node.js API pages (vs their '
               'Markdown sources)',
      'columns': ['converter', 'input', *cols[:7]], 'rows': rows,
    })  # fmt: skip
  summary = {
    'drafter_rouge_l': d_rouge,
    'refined_rouge_l': conv[f'{drafter} + rule refine']['rouge_l'],
    'sft_rouge_l': _mean(per_seed['sft'], 'rouge_l')[0],
    'sft_cl_rouge_l': _mean(per_seed['sft_cl'], 'rouge_l')[0],
    'merged_rouge_l': _mean(per_seed['merged'], 'rouge_l')[0],
    'dpo_rouge_l': _mean(per_seed['dpo'], 'rouge_l')[0],
    'self_play_rouge_l': _mean(per_seed['self_play'], 'rouge_l')[0],
    'dpo_copy_accuracy': _mean(per_seed['dpo'], 'copy_accuracy')[0],
    'ring_degree': ring_degree,
    'sft_degeneration': _mean(per_seed['sft'], 'degeneration')[0],
    'sft_cl_degeneration': _mean(per_seed['sft_cl'], 'degeneration')[0],
    'dpo_json_pass_rate': _mean(per_seed['dpo'], 'json_pass_rate')[0],
    'dpo_json_f1': _mean(per_seed['dpo'], 'json_f1')[0],
    'prompts_cut_markdown': cut['markdown'],
    'prompts_cut_json': cut['json'],
    'seconds': seconds,
  }
  curve_series = {}
  for seed, c in curves.items():
    for stage, pts in c.items():
      curve_series[f'{stage} seed {seed}'] = {
        'x': [p[0] for p in pts],
        'y': [p[1] for p in pts],
      }
  result = {
    'title': 'ReaderLM-v2: HTML to Markdown/JSON (synthesis pipeline, '
             'staged recipe)',
    'config_name': config.get('name', 'custom'),
    'headline': ['dpo_rouge_l', 'drafter_rouge_l', 'refined_rouge_l',
                 'sft_rouge_l'],
    'effects': effects,
    'summary': summary,
    'tables': tables,
    'curves': [{'title': 'Training loss by stage', 'xlabel': 'step',
                'ylabel': 'loss', 'series': curve_series}],
    'notes': notes + [
      f'sample output (seed {config.seeds[0]}, +DPO): '
      f'{per_seed["dpo"][0]["sample"]!r}'
    ],
  }  # fmt: skip
  return report.write_metrics(workdir, result)
