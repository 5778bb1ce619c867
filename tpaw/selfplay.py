"""The self-play iteration driver: sample, build the team, train, repeat.

Iteration `t = 0 .. T-1` of `run_selfplay` (the policy at its start is
theta_t; theta_0 is the SFT model):

1. sample `y'` for every SFT prompt from theta_t with the KV-cache sampler
   (`common.sampling.Sampler`; temperature from the config, key derived
   from the seed and `t`), giving `D_t`; store theta_t and `D_t`
   (`team.TeamStore`, orbax);
2. build the opponent data `D_O = D_t ∪ ... ∪ D_{t-window+1}` and the
   team `theta_t, ..., theta_{t-n_max+1}`, and precompute the team's
   log-probs of every target and sample of `D_O` (batched, jitted);
3. train `steps_per_iteration` steps of the TPAW loss on batches drawn
   from `D_O` (only the current model runs forward in a step).

All iterations are one `common.train.fit_on_policy` run: its rollout
function does steps 1-2 when a step opens an iteration (it sees the
current state, theta_t) and otherwise draws the step's batch, so the
loop's checkpoints, resume, NaN checks and history cover the whole
self-play; a kill mid-iteration restarts from the latest checkpoint,
restores the team and `D_t` from the store, and ends with the same
parameters as an uninterrupted run.

The loss hyperparameters (`lam`, `eta`, `gamma`) live in
`TrainState.extras` as traced values. SPIN is `n_max = 1, eta = 1`;
the ablations are `eta = 1` (w/o TRW) and `gamma = 0` (w/o MPW: uniform
player weights, exactly `1 / n`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from common import models
from common import rl
from common import train
from common.sampling import sampler as sampler_lib
from tpaw import data as data_lib
from tpaw import lanes as lanes_lib
from tpaw import loss as loss_lib
from tpaw import team as team_lib

BATCH_KEYS = (
  'prompt',
  'prompt_mask',
  'target',
  'target_mask',
  'generated',
  'generated_mask',
  'team_target_logps',
  'team_generated_logps',
  'team_mask',
  'sft_target_logps',
)


@dataclasses.dataclass(frozen=True)
class SelfPlayConfig:
  """What `run_selfplay` does.

  Attributes:
    iterations: T, self-play iterations.
    steps_per_iteration: K, optimizer steps per iteration.
    batch_size: triplets per step (drawn without replacement from D_O).
    n_max: the largest team (the team grows 1 -> n_max).
    team_width: the padded team axis of the step (>= n_max; experiments
      pad every arm to the same width).
    opponent_window: iterations of samples in D_O (the paper: 3).
    lam: lambda, the implicit reward's scale.
    eta: TRW weight (1: off).
    gamma: MPW temperature (0: uniform weights).
    temperature: sampling temperature of y' (0: greedy).
    logprob_batch_size: rows per jitted team forward.
    checkpoint_every: training checkpoints every N steps (None: at the end
      only; iteration checkpoints are always kept in the team store).
    log_every: log every N steps.
    seed: batch order and sampling keys.
  """

  iterations: int = 4
  steps_per_iteration: int = 50
  batch_size: int = 32
  n_max: int = 3
  team_width: int = 0
  opponent_window: int = 3
  lam: float = 0.1
  eta: float = 6.0
  gamma: float = 0.5
  temperature: float = 1.0
  logprob_batch_size: int = 64
  checkpoint_every: int | None = None
  log_every: int = 10
  seed: int = 0

  def __post_init__(self):
    for name, lo in (
      ('iterations', 1),
      ('steps_per_iteration', 1),
      ('batch_size', 1),
      ('n_max', 1),
      ('opponent_window', 1),
      ('logprob_batch_size', 1),
      ('log_every', 1),
    ):
      v = getattr(self, name)
      if not isinstance(v, int) or v < lo:
        raise ValueError(
          f'SelfPlayConfig.{name} must be an integer >= {lo}; got {v!r}.'
        )
    if self.steps_per_iteration % self.log_every:
      raise ValueError(
        f'SelfPlayConfig.log_every={self.log_every} must divide '
        f'steps_per_iteration={self.steps_per_iteration} (each logged '
        'record then belongs to one iteration).'
      )
    if self.team_width and self.team_width < self.n_max:
      raise ValueError(
        f'SelfPlayConfig.team_width={self.team_width} < n_max={self.n_max}.'
      )
    if not self.temperature >= 0:
      raise ValueError(
        f'SelfPlayConfig.temperature must be >= 0; got {self.temperature}.'
      )
    loss_lib.check_hyperparameters(self.lam, self.eta, self.gamma)

  @property
  def width(self) -> int:
    return max(self.team_width, self.n_max)


def hyperparameters(config: SelfPlayConfig) -> dict[str, jax.Array]:
  """`TrainState.extras`: the loss's traced hyperparameters."""
  return {
    'lam': jnp.float32(config.lam),
    'eta': jnp.float32(config.eta),
    'gamma': jnp.float32(config.gamma),
  }


def make_loss(apply: models.ApplyFn):
  """`loss_fn(params, batch, hyper) -> (loss, metrics)` of TPAW on a batch.

  One forward of the current model over chosen (prompt + target) and
  rejected (prompt + sample) concatenated on the batch axis
  (`common.rl.concatenated_sequence_logprobs`); the team's log-probs come
  precomputed in the batch (`BATCH_KEYS`).
  """

  def loss_fn(params, batch, hyper):
    chosen = data_lib.sequence_batch(
      batch['prompt'], batch['prompt_mask'], batch['target'],
      batch['target_mask'],
    )  # fmt: skip
    rejected = data_lib.sequence_batch(
      batch['prompt'], batch['prompt_mask'], batch['generated'],
      batch['generated_mask'],
    )  # fmt: skip
    pair = rl.concatenated_sequence_logprobs(apply, params, chosen, rejected)
    losses, parts = loss_lib.tpaw_losses(
      pair.chosen_logps,
      pair.rejected_logps,
      batch['team_target_logps'],
      batch['team_generated_logps'],
      batch['team_mask'],
      lam=hyper['lam'],
      eta=hyper['eta'],
      gamma=hyper['gamma'],
    )
    metrics = loss_lib.diagnostics(
      parts, pair.chosen_logps, batch['sft_target_logps']
    )
    return jnp.mean(losses), metrics

  return loss_fn


def make_step(apply: models.ApplyFn, tx: optax.GradientTransformation):
  """`step_fn(state, batch) -> (state, metrics)` for `fit_on_policy`.

  The hyperparameters are read from `state.extras` (traced).
  """
  loss_fn = make_loss(apply)

  def step_fn(state, batch):
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, batch, state.extras
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
      'loss': loss,
      'grad_norm': optax.global_norm(grads),
      **metrics,
    }
    return state._replace(params=params, opt_state=opt_state), metrics

  return step_fn


class NonFiniteIterationError(FloatingPointError):
  """A non-finite metric during self-play, naming the step and iteration.

  Attributes:
    step: the loop step (as in `common.train.NonFiniteError`).
    iteration: the 1-based self-play iteration.
    metric: the metric's name.
  """

  def __init__(self, error: train.NonFiniteError, steps_per_iteration: int):
    self.step, self.metric, self.value = error.step, error.metric, error.value
    self.iteration = (error.step - 1) // steps_per_iteration + 1
    within = error.step - (self.iteration - 1) * steps_per_iteration
    super().__init__(
      f'self-play iteration {self.iteration}, step {within} of '
      f'{steps_per_iteration} in it: {error}'
    )


@dataclasses.dataclass
class SelfPlayResult:
  """What `run_selfplay` returns.

  Attributes:
    state: the final `TrainState`.
    history: the loop's logged records (incl. eval and rollout metrics).
    iterations: `per_iteration(history, K)`: per iteration the mean of
      each logged metric (team size, target reward, ...) and its evals.
  """

  state: Any
  history: list[dict[str, Any]]
  iterations: list[dict[str, Any]]


def _generate(sampler, params, data, config, eos_id, pad_id, iteration):
  sampler.update(params)
  gen_cfg = sampler_lib.GenerationConfig(
    max_new_tokens=data.target.shape[1],
    temperature=config.temperature,
    eos_ids=(eos_id,),
    pad_id=pad_id,
  )
  key = jax.random.fold_in(jax.random.key(config.seed), 1000 + iteration)
  out = sampler.sample(data.prompt, data.prompt_mask, key, gen_cfg)
  out = jax.device_get(out)
  return {
    'generated': np.asarray(out.tokens, np.int32),
    'generated_mask': np.asarray(out.mask, bool),
  }


def equals_target(data: data_lib.PairData, entry: dict[str, Any]) -> float:
  """Fraction of samples token-identical to their target (no signal there)."""
  same = (entry['generated_mask'] == data.target_mask).all(1) & (
    np.where(data.target_mask, entry['generated'] == data.target, True)
  ).all(1)
  return float(same.mean())


@dataclasses.dataclass
class Lane:
  """One self-play run of a `run_selfplay_lanes` stack.

  Attributes:
    name: metric prefix and folder (`<workdir>/<name>/team`); '' for a
      single run.
    init_params: theta_0 (the SFT model).
    config: its `SelfPlayConfig`; the lanes of a stack must agree on the
      shapes (`STACK_FIELDS`) and may differ in the rest (seed, team,
      window, lam, eta, gamma, temperature).
  """

  name: str
  init_params: Any
  config: SelfPlayConfig


STACK_FIELDS = (
  'iterations',
  'steps_per_iteration',
  'batch_size',
  'width',
  'checkpoint_every',
  'log_every',
  'logprob_batch_size',
)


def run_selfplay(
  graphdef: nnx.GraphDef,
  init_params: Any,
  data: data_lib.PairData,
  tx: optax.GradientTransformation,
  config: SelfPlayConfig,
  workdir: str | os.PathLike,
  *,
  eos_id: int,
  pad_id: int = 0,
  eval_fn: Callable[[Any], dict[str, float]] | None = None,
  mesh: jax.sharding.Mesh | None = None,
) -> SelfPlayResult:
  """Runs (or resumes) `config.iterations` self-play iterations.

  Args:
    graphdef: the model structure (`common.models.split`).
    init_params: theta_0, the SFT model.
    data: the SFT pairs (`N` >= `config.batch_size`).
    tx: the optimizer (one state for the whole run).
    config: a `SelfPlayConfig`.
    workdir: `<workdir>/checkpoints` (training, via the loop) and
      `<workdir>/team/checkpoints/<t>` (theta_t and D_t).
    eos_id: ends samples.
    pad_id: filler id of samples.
    eval_fn: `eval_fn(params) -> {name: float}`, run after every iteration
      (logged as `eval_<name>` at steps `K, 2K, ...`).
    mesh: the training mesh (default: all devices).

  Returns:
    A `SelfPlayResult` (`state.params` unstacked).

  Raises:
    NonFiniteIterationError: a non-finite loss or metric (naming the step
      and iteration); the checkpoints written before it are kept.
  """
  state, history, per_lane = run_selfplay_lanes(
    graphdef,
    [Lane('', init_params, config)],
    data,
    tx,
    workdir,
    eos_id=eos_id,
    pad_id=pad_id,
    eval_fn=eval_fn,
    mesh=mesh,
  )
  state = state._replace(
    params=lanes_lib.unstack(state.params, 0),
    opt_state=lanes_lib.unstack(state.opt_state, 0),
    extras=lanes_lib.unstack(state.extras, 0),
  )
  return SelfPlayResult(state, history, per_lane[''])


def run_selfplay_lanes(
  graphdef: nnx.GraphDef,
  lanes: list[Lane],
  data: data_lib.PairData,
  tx: optax.GradientTransformation,
  workdir: str | os.PathLike,
  *,
  eos_id: int,
  pad_id: int = 0,
  eval_fn: Callable[[Any], dict[str, float]] | None = None,
  mesh: jax.sharding.Mesh | None = None,
) -> tuple[Any, list[dict[str, Any]], dict[str, list[dict[str, float]]]]:
  """`run_selfplay` for several lanes stacked in one jitted step.

  Every lane samples, keeps its team store (`<workdir>/<name>/team`) and
  trains exactly as it would alone; the stack shares one compiled step and
  one training checkpoint (`<workdir>/checkpoints`).

  Returns:
    `(state, history, per_lane)`: the stacked final state (`[L, ...]`
    leaves), the loop's records (lane metrics named `'<lane>:<metric>'`)
    and `{lane: per_iteration(...)}`.
  """
  names = [lane.name for lane in lanes]
  lanes_lib.check_names(names)
  first = lanes[0].config
  for lane in lanes[1:]:
    for field in STACK_FIELDS:
      if getattr(lane.config, field) != getattr(first, field):
        raise ValueError(
          f'tpaw: lane {lane.name!r} has {field}='
          f'{getattr(lane.config, field)} but lane {lanes[0].name!r} has '
          f'{getattr(first, field)}; stacked lanes must share {STACK_FIELDS}.'
        )
  k = first.steps_per_iteration
  n = len(data)
  if first.batch_size > n:
    raise ValueError(
      f'tpaw: batch_size={first.batch_size} > the {n} SFT pairs.'
    )
  workdir = os.fspath(workdir)
  apply = models.apply_fn(graphdef)
  capacity = data.prompt.shape[1] + data.target.shape[1]
  sampler = sampler_lib.Sampler(
    models.merge(graphdef, lanes[0].init_params), capacity
  )
  stores, likes, sft_targets, caches = [], [], [], []
  for lane in lanes:
    c = lane.config
    stores.append(
      team_lib.TeamStore(
        os.path.join(workdir, lane.name, 'team'),
        max_to_keep=max(c.n_max, c.opponent_window) + 1,
      )
    )
    host_init = team_lib.to_host(lane.init_params)
    likes.append(
      {
        'params': host_init,
        'generated': np.zeros(data.target.shape, np.int32),
        'generated_mask': np.zeros(data.target.shape, bool),
      }
    )
    sft_targets.append(
      team_lib.sequence_logps(
        graphdef,
        host_init,
        data.prompt,
        data.prompt_mask,
        data.target,
        data.target_mask,
        c.logprob_batch_size,
      )  # fmt: skip
    )
    caches.append({'iteration': None})

  def open_iteration(i, params, t):
    c, store, cache = lanes[i].config, stores[i], caches[i]
    if t not in store.iterations():
      entry = {
        'params': team_lib.to_host(params),
        **_generate(sampler, params, data, c, eos_id, pad_id, t),
      }
      store.save(t, entry)
    team_its = team_lib.team_iterations(t, c.n_max)
    opp_its = team_lib.opponent_iterations(t, c.opponent_window)
    entries = {j: store.restore(j, likes[i]) for j in set(team_its + opp_its)}
    opponent = team_lib.stack_opponent(data, [entries[j] for j in opp_its])
    logps = team_lib.team_logprobs(
      graphdef,
      [entries[j]['params'] for j in team_its],
      opponent,
      c.width,
      c.logprob_batch_size,
    )
    reps = opponent['prompt'].shape[0] // n
    lane = lanes[i].name
    cache.update(
      iteration=t,
      arrays={
        **opponent,
        **logps,
        'sft_target_logps': np.tile(sft_targets[i], reps),
      },
      host={
        lanes_lib.lane_key(lane, 'iteration'): float(t + 1),
        lanes_lib.lane_key(lane, 'opponent_triplets'): float(
          opponent['prompt'].shape[0]
        ),
        lanes_lib.lane_key(lane, 'generated_equals_target'): equals_target(
          data, entries[t]
        ),
      },
    )

  def rollout_fn(state, step):
    t = step // k
    batches, host = [], {}
    for i, lane in enumerate(lanes):
      cache = caches[i]
      if cache['iteration'] != t:
        open_iteration(i, lanes_lib.unstack(state.params, i), t)
      arrays = cache['arrays']
      m = arrays['prompt'].shape[0]
      idx = np.random.default_rng([lane.config.seed, 7, step]).choice(
        m, first.batch_size, replace=False
      )
      batches.append({key: arrays[key][idx] for key in BATCH_KEYS})
      host.update(cache['host'])
    return lanes_lib.stack_batches(batches), host

  state = lanes_lib.create_state(
    [lane.init_params for lane in lanes],
    tx,
    first.seed,
    [hyperparameters(lane.config) for lane in lanes],
  )

  def evaluate(state):
    out = {}
    for i, lane in enumerate(lanes):
      for key, v in eval_fn(lanes_lib.unstack(state.params, i)).items():
        out[lanes_lib.lane_key(lane.name, key)] = v
    return out

  loss_fn = make_loss(apply)
  try:
    state, history = train.fit_on_policy(
      state,
      lanes_lib.make_lane_step(loss_fn, tx, names),
      rollout_fn,
      num_steps=first.iterations * k,
      workdir=workdir,
      mesh=mesh,
      checkpoint_every=first.checkpoint_every,
      log_every=first.log_every,
      eval_fn=evaluate if eval_fn else None,
      eval_every=k,
      progress=False,
    )
  except train.NonFiniteError as e:
    raise NonFiniteIterationError(e, k) from e
  finally:
    for store in stores:
      store.close()
  per_lane = {name: per_iteration(history, k, name) for name in names}
  return state, history, per_lane


def per_iteration(
  history: list[dict[str, Any]], steps_per_iteration: int, lane: str = ''
) -> list[dict[str, float]]:
  """Per iteration: the mean of each metric over its logged records.

  Records are assigned by their step (`(step - 1) // K`); `log_every`
  divides `K`, so no record spans two iterations. `eval_*` entries (logged
  at the iteration's last step) are carried as they are.

  Args:
    history: the loop's records.
    steps_per_iteration: K.
    lane: keep only this lane's metrics (`'<lane>:<name>'` and
      `'eval_<lane>:<name>'`, returned without the prefix); '' keeps the
      unprefixed ones.

  Returns:
    One dict per iteration, `{'iteration': t (1-based), name: mean}`.
  """
  groups: dict[int, list[dict[str, Any]]] = {}
  for record in history:
    if record['step'] == 0:
      continue
    record = _lane_view(record, lane)
    groups.setdefault((record['step'] - 1) // steps_per_iteration, []).append(
      record
    )
  out = []
  for t in sorted(groups):
    rows = groups[t]
    names = sorted({key for r in rows for key in r} - {'step', 'iteration'})
    entry: dict[str, float] = {'iteration': t + 1}
    for name in names:
      values = [float(r[name]) for r in rows if name in r]
      entry[name] = float(np.mean(values))
    out.append(entry)
  return out


def _lane_view(record: dict[str, Any], lane: str) -> dict[str, Any]:
  out = {'step': record['step']}
  for key, value in record.items():
    if key == 'step':
      continue
    if lane == '':
      if lanes_lib.SEP not in key:
        out[key] = value
      continue
    sep = lanes_lib.SEP
    for prefix, head in ((f'{lane}{sep}', ''), (f'eval_{lane}{sep}', 'eval_')):
      if key.startswith(prefix):
        out[head + key[len(prefix) :]] = value
  return out
