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
    A `SelfPlayResult`.

  Raises:
    NonFiniteIterationError: a non-finite loss or metric (naming the step
      and iteration); the checkpoints written before it are kept.
  """
  k = config.steps_per_iteration
  n = len(data)
  if config.batch_size > n:
    raise ValueError(
      f'tpaw: batch_size={config.batch_size} > the {n} SFT pairs.'
    )
  workdir = os.fspath(workdir)
  apply = models.apply_fn(graphdef)
  capacity = data.prompt.shape[1] + data.target.shape[1]
  sampler = sampler_lib.Sampler(models.merge(graphdef, init_params), capacity)
  store = team_lib.TeamStore(
    os.path.join(workdir, 'team'),
    max_to_keep=max(config.n_max, config.opponent_window) + 1,
  )
  host_init = team_lib.to_host(init_params)
  like = {
    'params': host_init,
    'generated': np.zeros(data.target.shape, np.int32),
    'generated_mask': np.zeros(data.target.shape, bool),
  }
  sft_target = team_lib.sequence_logps(
    graphdef, host_init, data.prompt, data.prompt_mask, data.target,
    data.target_mask, config.logprob_batch_size,
  )  # fmt: skip
  cache: dict[str, Any] = {'iteration': None}

  def open_iteration(state, t):
    if t not in store.iterations():
      entry = {
        'params': team_lib.to_host(state.params),
        **_generate(sampler, state.params, data, config, eos_id, pad_id, t),
      }
      store.save(t, entry)
    needed = sorted(
      set(team_lib.team_iterations(t, config.n_max))
      | set(team_lib.opponent_iterations(t, config.opponent_window))
    )
    entries = {j: store.restore(j, like) for j in needed}
    opponent = team_lib.stack_opponent(
      data,
      [
        entries[j]
        for j in team_lib.opponent_iterations(t, config.opponent_window)
      ],
    )
    members = [
      entries[j]['params'] for j in team_lib.team_iterations(t, config.n_max)
    ]
    logps = team_lib.team_logprobs(
      graphdef, members, opponent, config.width, config.logprob_batch_size
    )
    reps = opponent['prompt'].shape[0] // n
    arrays = {
      **opponent,
      **logps,
      'sft_target_logps': np.tile(sft_target, reps),
    }
    cache.update(
      iteration=t,
      arrays=arrays,
      host={
        'iteration': float(t + 1),
        'opponent_triplets': float(opponent['prompt'].shape[0]),
        'generated_equals_target': equals_target(data, entries[t]),
      },
    )

  def rollout_fn(state, step):
    t = step // k
    if cache['iteration'] != t:
      open_iteration(state, t)
    arrays = cache['arrays']
    m = arrays['prompt'].shape[0]
    idx = np.random.default_rng([config.seed, 7, step]).choice(
      m, config.batch_size, replace=False
    )
    return {key: arrays[key][idx] for key in BATCH_KEYS}, cache['host']

  state = train.TrainState.create(
    init_params, tx, config.seed, extras=hyperparameters(config)
  )
  try:
    state, history = train.fit_on_policy(
      state,
      make_step(apply, tx),
      rollout_fn,
      num_steps=config.iterations * k,
      workdir=workdir,
      mesh=mesh,
      checkpoint_every=config.checkpoint_every,
      log_every=config.log_every,
      eval_fn=(lambda s: eval_fn(s.params)) if eval_fn else None,
      eval_every=k,
      progress=False,
    )
  except train.NonFiniteError as e:
    raise NonFiniteIterationError(e, k) from e
  finally:
    store.close()
  return SelfPlayResult(state, history, per_iteration(history, k))


def per_iteration(
  history: list[dict[str, Any]], steps_per_iteration: int
) -> list[dict[str, float]]:
  """Per iteration: the mean of each metric over its logged records.

  Records are assigned by their step (`(step - 1) // K`); `log_every`
  divides `K`, so no record spans two iterations. `eval_*` entries (logged
  at the iteration's last step) are carried as they are.

  Returns:
    One dict per iteration, `{'iteration': t (1-based), name: mean}`.
  """
  groups: dict[int, list[dict[str, Any]]] = {}
  for record in history:
    if record['step'] == 0:
      continue
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
