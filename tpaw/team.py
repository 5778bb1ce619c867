"""The team of frozen checkpoints: which members, their stored states, and
their log-probs precomputed once per iteration.

Iteration `t` (0-based; iteration `t` trains theta_t into theta_{t+1})
plays against the members `theta_t, theta_{t-1}, ...`, at most `N_max`
(`team_iterations`), on the opponent data `D_t ∪ D_{t-1} ∪ ...`, at most
`window` iterations' samples (`opponent_iterations`).

`TeamStore` keeps, per iteration, the checkpoint `theta_t` and its samples
`D_t` in orbax (`<dir>/checkpoints/<t>`, `max_to_keep` >= the larger of
`N_max` and the window), so a restarted run restores the team and the
opponent data instead of regenerating them.

The members are frozen, so their log-probs of every target `y` and every
sample `y'` of the opponent data are computed once per iteration in
batched jitted forwards (`team_logprobs`) and stored as arrays; a training
step then needs only the current model's forward.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common import rl
from common.train import checkpoint as checkpoint_lib
from tpaw import data as data_lib


def team_iterations(iteration: int, n_max: int) -> list[int]:
  """Members of iteration `t`: `[t, t-1, ..., max(0, t - n_max + 1)]`."""
  if n_max < 1:
    raise ValueError(f'tpaw: n_max must be >= 1; got {n_max}.')
  if iteration < 0:
    raise ValueError(f'tpaw: iteration must be >= 0; got {iteration}.')
  return list(range(iteration, max(-1, iteration - n_max), -1))


def opponent_iterations(iteration: int, window: int) -> list[int]:
  """Iterations whose samples form `D_O`: `[t, t-1, ..., t - window + 1]`."""
  if window < 1:
    raise ValueError(f'tpaw: opponent_window must be >= 1; got {window}.')
  return list(range(iteration, max(-1, iteration - window), -1))


def pair_logps(graphdef, params, prompt, prompt_mask, response, mask):
  """`log pi(response | prompt)` `[B]` of one batch (traceable)."""
  batch = data_lib.sequence_batch(prompt, prompt_mask, response, mask)
  model = nnx.merge(graphdef, params)
  logits = model(
    batch['tokens'], attention_mask=batch['attention_mask'].astype(bool)
  ).logits
  lp = rl.next_token_logprobs(logits, batch['tokens'])
  return rl.sequence_logprob(lp, batch['loss_mask'])


_sequence_logps = jax.jit(pair_logps, static_argnums=0)


def sequence_logps(
  graphdef: nnx.GraphDef,
  params: Any,
  prompt: np.ndarray,
  prompt_mask: np.ndarray,
  response: np.ndarray,
  response_mask: np.ndarray,
  batch_size: int,
) -> np.ndarray:
  """`log pi(response | prompt)` for `M` pairs in jitted chunks, `[M]`.

  Chunks have one shape (`batch_size` rows; the last is padded by
  repeating its rows), so the forward compiles once per model.

  Args:
    graphdef: the model structure (static).
    params: its parameters.
    prompt: `[M, P]` left-padded; `prompt_mask` `[M, P]`.
    response: `[M, R]` right-padded; `response_mask` `[M, R]`.
    batch_size: rows per forward.

  Returns:
    `[M]` float32 sequence log-probs (host array).
  """
  m = prompt.shape[0]
  out = []
  for i in range(0, m, batch_size):
    idx = np.arange(i, min(i + batch_size, m))
    pad = np.concatenate([idx, np.full(batch_size - idx.size, idx[-1])])
    lp = _sequence_logps(
      graphdef,
      params,
      prompt[pad],
      prompt_mask[pad],
      response[pad],
      response_mask[pad],
    )
    out.append(np.asarray(lp)[: idx.size])
  return np.concatenate(out) if out else np.zeros((0,), np.float32)


def team_logprobs(
  graphdef: nnx.GraphDef,
  members: Sequence[Any],
  opponent: dict[str, np.ndarray],
  n_max: int,
  batch_size: int,
) -> dict[str, np.ndarray]:
  """The team's log-probs of the opponent data, padded to `n_max` members.

  Args:
    graphdef: the model structure.
    members: `n <= n_max` parameter pytrees, newest first.
    opponent: `{'prompt', 'prompt_mask', 'target', 'target_mask',
      'generated', 'generated_mask'}`, each `[M, ...]`.
    n_max: the padded team width.
    batch_size: rows per jitted forward.

  Returns:
    `team_target_logps`, `team_generated_logps` (`[M, n_max]` float32, 0 for
    absent members) and `team_mask` (`[M, n_max]` bool).
  """
  if not 1 <= len(members) <= n_max:
    raise ValueError(
      f'tpaw: a team needs 1..n_max={n_max} members; got {len(members)}.'
    )
  m = opponent['prompt'].shape[0]
  target = np.zeros((m, n_max), np.float32)
  generated = np.zeros((m, n_max), np.float32)
  for j, params in enumerate(members):
    o = opponent
    target[:, j] = sequence_logps(
      graphdef, params, o['prompt'], o['prompt_mask'], o['target'],
      o['target_mask'], batch_size,
    )  # fmt: skip
    generated[:, j] = sequence_logps(
      graphdef, params, o['prompt'], o['prompt_mask'], o['generated'],
      o['generated_mask'], batch_size,
    )  # fmt: skip
  mask = np.zeros((m, n_max), bool)
  mask[:, : len(members)] = True
  return {
    'team_target_logps': target,
    'team_generated_logps': generated,
    'team_mask': mask,
  }


def to_host(tree: Any) -> Any:
  """A numpy copy of a pytree (safe to keep while the loop donates it)."""
  return jax.tree.map(lambda x: np.array(jax.device_get(x)), tree)


class TeamStore:
  """Orbax store of each iteration's checkpoint and samples.

  Entry `t` is `{'params': theta_t, 'generated': [N, R] int32,
  'generated_mask': [N, R] bool}` in `<directory>/checkpoints/<t>`.
  """

  def __init__(self, directory: str | os.PathLike, max_to_keep: int):
    if max_to_keep < 1:
      raise ValueError(
        f'TeamStore: max_to_keep must be >= 1; got {max_to_keep}.'
      )
    self._ckpt = checkpoint_lib.Checkpointer(directory, max_to_keep=max_to_keep)
    self.directory = self._ckpt.directory

  def iterations(self) -> list[int]:
    """Stored iterations, ascending."""
    return self._ckpt.all_steps()

  def save(self, iteration: int, entry: dict[str, Any]) -> None:
    """Saves entry `iteration` (host arrays) and waits until it is on disk."""
    self._ckpt.save(iteration, entry, force=True)
    self._ckpt.wait()

  def restore(self, iteration: int, like: dict[str, Any]) -> dict[str, Any]:
    """Restores entry `iteration` into the structure of `like` (host)."""
    if iteration not in self.iterations():
      raise FileNotFoundError(
        f'TeamStore: iteration {iteration} is not in {self.directory} '
        f'(stored: {self.iterations()}); the team needs it.'
      )
    abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), like
    )
    return to_host(self._ckpt.restore(like=abstract, step=iteration))

  def close(self) -> None:
    self._ckpt.close()


def stack_opponent(
  data: data_lib.PairData, entries: Sequence[dict[str, Any]]
) -> dict[str, np.ndarray]:
  """`D_O`: the SFT pairs repeated once per entry with that entry's samples.

  Returns:
    `{'prompt', 'prompt_mask', 'target', 'target_mask', 'generated',
    'generated_mask'}`, each `[len(entries) * N, ...]`.
  """
  k = len(entries)
  return {
    'prompt': np.tile(data.prompt, (k, 1)),
    'prompt_mask': np.tile(data.prompt_mask, (k, 1)),
    'target': np.tile(data.target, (k, 1)),
    'target_mask': np.tile(data.target_mask, (k, 1)),
    'generated': np.concatenate([e['generated'] for e in entries]),
    'generated_mask': np.concatenate([e['generated_mask'] for e in entries]),
  }


def recompute_team_logps(
  graphdef: nnx.GraphDef,
  members: Sequence[Any],
  batch: dict[str, jax.Array],
) -> tuple[jax.Array, jax.Array]:
  """The team's log-probs of one batch, recomputed (`[B, n]` each; jit-able).

  What `team_logprobs` avoids: `n` extra reference forwards per step. Used
  by the benchmark and by tests that check the two agree.
  """
  target, generated = [], []
  for params in members:
    target.append(
      pair_logps(
        graphdef,
        params,
        batch['prompt'],
        batch['prompt_mask'],
        batch['target'],
        batch['target_mask'],
      )  # fmt: skip
    )
    generated.append(
      pair_logps(
        graphdef,
        params,
        batch['prompt'],
        batch['prompt_mask'],
        batch['generated'],
        batch['generated_mask'],
      )  # fmt: skip
    )
  return jnp.stack(target, axis=1), jnp.stack(generated, axis=1)
