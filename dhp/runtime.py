"""DHP runtime: one sub-mesh per planned group, gradients combined on all.

For a planned round (``plan_types.RoundPlan``) the runtime

1. builds (and caches) a ``jax.make_mesh`` sub-mesh over each group's
   contiguous devices, any size (3, 5, 6, ...);
2. hands the replicated parameters to each group without copying: the
   full-mesh array's per-device buffers are re-wrapped with
   ``jax.make_array_from_single_device_arrays`` for the sub-mesh;
3. dispatches every group's forward/backward (ring attention under
   ``jax.shard_map``) asynchronously, from an AOT executable cached by
   (device ids, padded length bucket);
4. gathers each device's copy of its group's gradient into one
   [N, ...] array on the full mesh (again without copies) and reduces
   sum_r w_r g_r with w_r = 1 / (d_g * tokens), the token-weighted mean;
5. applies one optax step on the full mesh: per round (``step``), or per
   batch with the rounds' gradients accumulated (``batch_step``).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from common.parallel import ring_attention as ra
from dhp import model as model_lib
from dhp import plan_types as pt

RING_AXIS = 'cp'
FULL_AXIS = 'dhp'
_LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def bucket_length(num_tokens, degree):
  """Padded group length: a multiple of 2d on a ~1.5x geometric ladder.

  The group's padded token count is rounded up to 2d * u with u the
  smallest ladder value >= ceil(num_tokens / 2d) (then powers of two), so
  few distinct shapes (and compiled executables) occur.
  """
  two_d = 2 * degree
  units = max(1, -(-int(num_tokens) // two_d))
  for u in _LADDER:
    if u >= units:
      return u * two_d
  return (1 << (units - 1).bit_length()) * two_d


def pack_group(sequences: Sequence[np.ndarray], degree, total_len=None):
  """Host arrays [T] of a group in zig-zag order for a ring of ``degree``.

  Each sequence predicts its next token; the last token of every sequence
  and all padding have weight 0.

  Returns:
    dict of numpy arrays: tokens, targets (int32), weights (float32),
    segment, position (int32).
  """
  lens = [len(s) for s in sequences]
  layout = ra.zigzag_layout(lens, degree, total_len)
  flat = np.concatenate([np.asarray(s, np.int32) for s in sequences])
  nxt = np.concatenate(
    [np.append(np.asarray(s[1:], np.int32), 0) for s in sequences]
  )
  last = np.concatenate([np.arange(n) == n - 1 for n in lens])
  src = np.maximum(layout.source, 0)
  valid = layout.source >= 0
  return {
    'tokens': np.where(valid, flat[src], 0).astype(np.int32),
    'targets': np.where(valid, nxt[src], 0).astype(np.int32),
    'weights': (valid & ~last[src]).astype(np.float32),
    'segment': layout.segment,
    'position': layout.position,
  }


@dataclasses.dataclass
class ExecutableCache:
  """Compiled executables by key, with hit/miss counts and compile time."""

  hits: int = 0
  misses: int = 0
  compile_seconds: float = 0.0
  _store: dict = dataclasses.field(default_factory=dict)

  def get(self, key, build: Callable[[], object]):
    if key in self._store:
      self.hits += 1
      return self._store[key]
    self.misses += 1
    start = time.perf_counter()
    value = build()
    self.compile_seconds += time.perf_counter() - start
    self._store[key] = value
    return value

  def __len__(self):
    return len(self._store)

  def reset_counts(self):
    self.hits = self.misses = 0

  @property
  def hit_rate(self) -> float:
    total = self.hits + self.misses
    return self.hits / total if total else float('nan')


class DHPRuntime:
  """Runs planned rounds of the tiny transformer on dynamic sub-meshes.

  Args:
    cfg: model sizes.
    optimizer: an optax transformation (applied on the full mesh).
    devices: the CP domain (default: all devices), in rank order.
    compiler_options: XLA options for the group executables, e.g.
      {'xla_backend_optimization_level': 0} to trade run time for compile
      time on CPU.
  """

  def __init__(
    self,
    cfg: model_lib.ModelConfig,
    optimizer: optax.GradientTransformation,
    devices=None,
    compiler_options=None,
  ):
    self.cfg = cfg
    self.compiler_options = dict(compiler_options or {})
    self.optimizer = optimizer
    self.devices = list(jax.devices() if devices is None else devices)
    if not self.devices:
      raise ValueError('DHPRuntime needs at least one device.')
    self.full_mesh = jax.make_mesh(
      (len(self.devices),),
      (FULL_AXIS,),
      (AxisType.Explicit,),
      devices=self.devices,
    )
    self.replicated = NamedSharding(self.full_mesh, P())
    self.cache = ExecutableCache()
    self._meshes: dict[tuple[int, int], jax.sharding.Mesh] = {}
    self._zeros: dict[tuple, jax.Array] = {}
    self._combine = jax.jit(
      jax.shard_map(
        lambda w, g: jax.tree.map(
          lambda x: jax.lax.psum(w[0] * x[0], FULL_AXIS), g
        ),
        mesh=self.full_mesh,
        in_specs=(P(FULL_AXIS), P(FULL_AXIS)),
        out_specs=P(),
      )
    )
    self._apply = jax.jit(self._apply_update)
    self._add = jax.jit(lambda a, b: jax.tree.map(jnp.add, a, b))

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  def _apply_update(self, params, opt_state, grads):
    updates, opt_state = self.optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  def init(self, params):
    """Replicates parameters on the full mesh; returns (params, opt_state)."""
    params = jax.device_put(params, self.replicated)
    with jax.set_mesh(self.full_mesh):
      return params, jax.jit(self.optimizer.init)(params)

  def submesh(self, offset, degree) -> jax.sharding.Mesh:
    """The (cached) 1-D mesh over devices offset .. offset + degree - 1."""
    if offset < 0 or degree < 1 or offset + degree > self.num_devices:
      raise ValueError(
        f'group at ranks [{offset}, {offset + degree}) is '
        f'outside the {self.num_devices}-device domain.'
      )
    key = (offset, degree)
    if key not in self._meshes:
      self._meshes[key] = jax.make_mesh(
        (degree,),
        (RING_AXIS,),
        (AxisType.Explicit,),
        devices=self.devices[offset : offset + degree],
      )
    return self._meshes[key]

  def regroup(self, tree, mesh):
    """Re-wraps full-mesh replicated arrays for ``mesh``; no data copies."""
    sharding = NamedSharding(mesh, P())

    def one(x):
      by_device = {s.device: s.data for s in x.addressable_shards}
      return jax.make_array_from_single_device_arrays(
        x.shape, sharding, [by_device[d] for d in mesh.devices.flat]
      )

    return jax.tree.map(one, tree)

  def _build(self, mesh, degree, total_len, params):
    attention = functools.partial(
      ra.ring_attention, axis_name=RING_AXIS, axis_size=degree
    )
    heads = self.cfg.num_heads

    def local(p, batch):
      def total(q):
        return jax.lax.psum(
          model_lib.loss_sum(q, batch, attention, heads), RING_AXIS
        )

      loss, grads = jax.value_and_grad(total)(p)
      return loss, jax.tree.map(lambda g: g[None], grads)

    fn = jax.jit(
      jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(P(), P(RING_AXIS)),
        out_specs=(P(), P(RING_AXIS)),
      )
    )
    rep, shard = NamedSharding(mesh, P()), NamedSharding(mesh, P(RING_AXIS))
    p_struct = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), params
    )
    b_struct = {
      name: jax.ShapeDtypeStruct((total_len,), dtype, sharding=shard)
      for name, dtype in (
        ('tokens', jnp.int32),
        ('targets', jnp.int32),
        ('weights', jnp.float32),
        ('segment', jnp.int32),
        ('position', jnp.int32),
      )
    }
    with jax.set_mesh(mesh):
      return fn.lower(p_struct, b_struct).compile(self.compiler_options)

  def executable(self, offset, degree, total_len, params):
    """AOT executable for a group, cached by (device ids, length bucket)."""
    mesh = self.submesh(offset, degree)
    key = (tuple(d.id for d in mesh.devices.flat), int(total_len), 'float32')
    return self.cache.get(
      key, lambda: self._build(mesh, degree, total_len, params)
    )

  def group_shapes(self, lengths, plan: pt.RoundPlan):
    """(offset, degree, bucketed length) of every group of a round."""
    out = []
    for g in plan.groups:
      need = ra.padded_length(np.asarray(lengths)[g.seq_ids], g.degree)
      out.append((g.offset, g.degree, bucket_length(need, g.degree)))
    return out

  def warmup(self, shapes, params):
    """Compiles the executables for (offset, degree, length) triples."""
    for offset, degree, total_len in shapes:
      self.executable(offset, degree, total_len, params)

  def loss_and_grads(self, params, sequences, plan: pt.RoundPlan):
    """Token-mean loss and gradient of a round, computed group by group.

    Args:
      params: replicated on the full mesh.
      sequences: list of int token arrays; plan.groups index it.
      plan: the round's plan (groups must fit the domain).

    Returns:
      (loss float, grads replicated on the full mesh, number of tokens).
    """
    lengths = np.array([len(s) for s in sequences])
    if lengths.min() < 2:
      raise ValueError('every sequence needs >= 2 tokens (next-token loss).')
    count = int((lengths - 1).sum())
    owner = np.full(self.num_devices, -1)
    for gi, g in enumerate(plan.groups):
      self.submesh(g.offset, g.degree)  # range check
      if (owner[g.offset : g.offset + g.degree] >= 0).any():
        raise ValueError(
          f'group {gi} overlaps another group on ranks '
          f'[{g.offset}, {g.offset + g.degree}).'
        )
      owner[g.offset : g.offset + g.degree] = gi
    outputs = []
    shapes = self.group_shapes(lengths, plan)
    for g, (offset, degree, total_len) in zip(plan.groups, shapes, strict=True):
      mesh = self.submesh(offset, degree)
      exe = self.executable(offset, degree, total_len, params)
      host = pack_group([sequences[i] for i in g.seq_ids], degree, total_len)
      batch = jax.device_put(host, NamedSharding(mesh, P(RING_AXIS)))
      outputs.append(exe(self.regroup(params, mesh), batch))  # async
    weights = np.zeros(self.num_devices, np.float32)
    for r, gi in enumerate(owner):
      if gi >= 0:
        weights[r] = 1.0 / (plan.groups[gi].degree * count)
    stacked = jax.tree.map(
      lambda *leaves: self._stack(leaves, owner), *[o[1] for o in outputs]
    )
    w = jax.device_put(weights, NamedSharding(self.full_mesh, P(FULL_AXIS)))
    with jax.set_mesh(self.full_mesh):
      grads = self._combine(w, stacked)
    loss = sum(float(o[0]) for o in outputs) / count
    return loss, grads, count

  def _stack(self, leaves, owner):
    """[N, ...] full-mesh array from each device's group gradient copy."""
    like = leaves[0]
    per_device = {}
    for leaf in leaves:
      for s in leaf.addressable_shards:
        per_device[s.device] = s.data
    shape = like.shape[1:]
    arrays = []
    for r, dev in enumerate(self.devices):
      if owner[r] >= 0:
        arrays.append(per_device[dev])
      else:  # an idle rank contributes zeros (weight 0)
        key = (dev.id, shape, like.dtype)
        if key not in self._zeros:
          self._zeros[key] = jax.device_put(
            jnp.zeros((1,) + shape, like.dtype), dev
          )
        arrays.append(self._zeros[key])
    return jax.make_array_from_single_device_arrays(
      (self.num_devices,) + shape,
      NamedSharding(self.full_mesh, P(FULL_AXIS)),
      arrays,
    )

  def accumulate(self, params, sequences, plan: pt.BatchPlan):
    """Token-mean loss and gradient of a whole batch, summed over rounds.

    Every round is run with the batch's token count as the denominator
    (``loss_and_grads`` on all of ``sequences``), so the rounds' losses and
    gradients add up to the batch's token mean: gradient accumulation.

    Args:
      params: replicated on the full mesh.
      sequences: the batch's token arrays; the rounds' seq_ids index it.
      plan: the batch plan; every sequence in exactly one group.

    Returns:
      (loss float, grads replicated on the full mesh, number of tokens).
    """
    ids = np.concatenate(
      [g.seq_ids for r in plan.rounds for g in r.groups]
    ).astype(np.int64)
    if not np.array_equal(np.sort(ids), np.arange(len(sequences))):
      raise ValueError(
        f'the batch plan covers sequences {sorted(set(ids.tolist()))[:8]}... '
        f'({len(ids)} entries), but every one of the {len(sequences)} '
        'sequences must be in exactly one group.'
      )
    loss, grads, count = 0.0, None, 0
    for r in plan.rounds:
      round_loss, round_grads, count = self.loss_and_grads(params, sequences, r)
      loss += round_loss
      with jax.set_mesh(self.full_mesh):
        grads = round_grads if grads is None else self._add(grads, round_grads)
    return loss, grads, count

  def batch_step(self, params, opt_state, sequences, plan: pt.BatchPlan):
    """One optimizer step on a whole batch (all its rounds accumulated).

    Returns:
      (params, opt_state, loss).
    """
    loss, grads, _ = self.accumulate(params, sequences, plan)
    if not np.isfinite(loss):
      raise FloatingPointError(f'non-finite DHP batch loss {loss}.')
    with jax.set_mesh(self.full_mesh):
      params, opt_state = self._apply(params, opt_state, grads)
    return params, opt_state, loss

  def step(self, params, opt_state, sequences, plan: pt.RoundPlan):
    """One optimizer step on a round. Returns (params, opt_state, loss)."""
    loss, grads, _ = self.loss_and_grads(params, sequences, plan)
    if not np.isfinite(loss):
      raise FloatingPointError(f'non-finite DHP loss {loss}.')
    with jax.set_mesh(self.full_mesh):
      params, opt_state = self._apply(params, opt_state, grads)
    return params, opt_state, loss


@functools.partial(jax.jit, static_argnames='num_heads')
def _reference_value_and_grad(params, batch, count, num_heads):
  def f(p):
    return model_lib.loss_sum(p, batch, ra.dense_attention, num_heads) / count

  return jax.value_and_grad(f)(params)


def reference_loss_and_grads(
  params, sequences, cfg: model_lib.ModelConfig, device=None
):
  """Single-device dense-attention loss (token mean) and gradients.

  The packed batch is padded to ``bucket_length`` so that batches of similar
  size share one compiled program.
  """
  device = jax.devices()[0] if device is None else device
  need = ra.padded_length([len(s) for s in sequences], 1)
  host = pack_group(sequences, 1, bucket_length(need, 1))
  count = np.float32(host['weights'].sum())
  params = jax.device_put(jax.tree.map(np.asarray, params), device)
  batch = jax.device_put(host, device)
  loss, grads = _reference_value_and_grad(
    params, batch, jax.device_put(count, device), cfg.num_heads
  )
  return float(loss), grads
