"""Cost model T(G, d): time of a group of sequences on a ring of d devices.

The functional form follows the DHP paper's profiler and FlexSP's fitted
model (see ``dhp/README.md``). For a group G of sequences with lengths L_i on
a context-parallel ring of d devices, in milliseconds:

  T(G, d) = sum_i (a1 L_i^2 + a2 L_i) / d / eff(L_i / d)      compute
          + sum_i layers (d - 1) [max(0, t_send_i - t_block_i) + alpha]
          + beta                                               per step

* ``eff(x) = x / (x + eff_half)`` is the kernel efficiency of a per-device
  chunk of x tokens (``eff_half = 0`` disables it: eff = 1).
* ``t_send_i = comm_factor * (L_i / d) * kv_bytes / BW`` is one ring step's
  K/V transfer (forward K, V and backward K, V, dK, dV: comm_factor 3) and
  ``t_block_i = a1 L_i^2 / d^2 / layers / eff`` the block attention that hides
  it; only the excess is exposed.
* ``BW(d)`` comes from a table by degree inside a node and drops to
  ``inter_node_gbps`` once the group spans more than one node.

Ulysses (all-to-all over heads) replaces the ring term by FlexSP's
``layers * 8 * hidden_bytes * L_i / d / BW(d)``, not hidden.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np
import scipy.optimize

RING = 'ring'
ULYSSES = 'ulysses'
_COMM_KINDS = (RING, ULYSSES)


@dataclasses.dataclass(frozen=True)
class CostModel:
  """Parameters of T(G, d). Times in ms, sizes in tokens, bandwidth in GB/s.

  Attributes:
    a1: ms per token^2 of one sequence (attention, all layers, fwd + bwd).
    a2: ms per token (linear layers, all layers, fwd + bwd).
    beta: constant ms per group and step (launch, optimizer share, ...).
    eff_half: per-device chunk (tokens) at which kernel efficiency is 1/2.
    num_layers: transformer layers (ring steps happen per layer).
    hidden_size: model width h (Ulysses all-to-all volume).
    kv_size: width of K plus V per token (2 * kv_heads * head_dim).
    bytes_per_elem: bytes of one activation element (2 for bf16).
    ring_step_ms: alpha, fixed latency of one ring step of one layer.
    comm_factor: ring traffic of fwd + bwd relative to the forward K/V pass.
    devices_per_node: devices sharing the fast intra-node link.
    bandwidth_table: ((max_degree, GB/s), ...) inside one node, ascending.
    inter_node_gbps: bandwidth once a group spans more than one node.
  """

  a1: float
  a2: float
  beta: float = 0.0
  eff_half: float = 0.0
  num_layers: int = 32
  hidden_size: int = 4096
  kv_size: int = 8192
  bytes_per_elem: int = 2
  ring_step_ms: float = 0.0
  comm_factor: float = 3.0
  devices_per_node: int = 8
  bandwidth_table: tuple[tuple[int, float], ...] = (
    (2, 154.0),
    (4, 137.0),
    (8, 121.0),
  )
  inter_node_gbps: float = 8.7

  def __post_init__(self):
    for name in ('a1', 'a2', 'beta', 'eff_half', 'ring_step_ms'):
      value = getattr(self, name)
      if not math.isfinite(value) or value < 0:
        raise ValueError(f'CostModel.{name}={value!r}: must be finite, >= 0.')
    if self.a1 == 0 and self.a2 == 0:
      raise ValueError('CostModel: a1 and a2 are both 0; compute is free.')
    for name in (
      'num_layers',
      'hidden_size',
      'kv_size',
      'bytes_per_elem',
      'devices_per_node',
    ):
      value = getattr(self, name)
      if int(value) != value or value < 1:
        raise ValueError(f'CostModel.{name}={value!r}: must be an int >= 1.')
    if not math.isfinite(self.comm_factor) or self.comm_factor < 0:
      raise ValueError(
        f'CostModel.comm_factor={self.comm_factor!r}: must be finite, >= 0.'
      )
    if not self.bandwidth_table:
      raise ValueError('CostModel.bandwidth_table is empty.')
    degrees = [int(d) for d, _ in self.bandwidth_table]
    if degrees != sorted(set(degrees)) or degrees[0] < 2:
      raise ValueError(
        f'CostModel.bandwidth_table degrees {degrees}: must be strictly '
        'increasing and >= 2.'
      )
    if degrees[-1] < self.devices_per_node:
      raise ValueError(
        f'CostModel.bandwidth_table covers degrees up to {degrees[-1]} but '
        f'devices_per_node={self.devices_per_node}; add an entry for it.'
      )
    for d, bw in self.bandwidth_table:
      if not math.isfinite(bw) or bw <= 0:
        raise ValueError(f'CostModel.bandwidth_table[{d}]={bw!r}: must be > 0.')
    if not math.isfinite(self.inter_node_gbps) or self.inter_node_gbps <= 0:
      raise ValueError(
        f'CostModel.inter_node_gbps={self.inter_node_gbps!r}: must be > 0.'
      )

  @functools.cached_property
  def _bw_arrays(self):
    return (
      np.array([d for d, _ in self.bandwidth_table]),
      np.array([bw for _, bw in self.bandwidth_table]),
    )

  def bandwidth(self, degree, crosses_node=None):
    """Link bandwidth (GB/s) seen by a ring of ``degree`` devices.

    Args:
      degree: int array [...] of ring degrees (>= 1).
      crosses_node: optional bool array [...]: the group's ranks span a node
        boundary. By default a group crosses iff degree > devices_per_node.

    Returns:
      float array [...] (inf for degree 1: no communication).
    """
    degree = np.asarray(degree)
    if crosses_node is None:
      crosses_node = degree > self.devices_per_node
    table_d, table_bw = self._bw_arrays
    idx = np.minimum(np.searchsorted(table_d, degree), len(table_d) - 1)
    bw = np.where(crosses_node, self.inter_node_gbps, table_bw[idx])
    return np.where(degree <= 1, np.inf, bw)

  def efficiency(self, chunk):
    """Kernel efficiency eff(x) = x / (x + eff_half) of x-token chunks."""
    chunk = np.asarray(chunk, dtype=np.float64)
    if self.eff_half == 0:
      return np.ones_like(chunk)
    return chunk / (chunk + self.eff_half)

  def sequence_times(self, lengths, degree, comm=RING, crosses_node=None):
    """Per-sequence time (ms) excluding beta; broadcasts lengths vs degree.

    Args:
      lengths: array [...] of sequence lengths (tokens).
      degree: int array broadcastable with ``lengths`` (>= 1).
      comm: 'ring' or 'ulysses'.
      crosses_node: optional bool array broadcastable with ``degree``.

    Returns:
      float64 array of the broadcast shape.
    """
    if comm not in _COMM_KINDS:
      raise ValueError(f'comm={comm!r}: must be one of {_COMM_KINDS}.')
    length = np.asarray(lengths, dtype=np.float64)
    d = np.asarray(degree, dtype=np.float64)
    if d.size and d.min() < 1:
      raise ValueError(f'degree must be >= 1, got min {d.min()}.')
    inv_d = 1.0 / d
    # 1 / eff(L / d) = 1 + eff_half * d / L, so X / d / eff = X / d +
    # eff_half * X / L; this keeps the [B, N] table to a few operations.
    attn_l = self.a1 * length  # a1 L
    attn = attn_l * length * inv_d + self.eff_half * attn_l
    compute = attn + self.a2 * length * inv_d + self.eff_half * self.a2
    bw_bytes_per_ms = self.bandwidth(degree, crosses_node) * 1e6
    steps = self.num_layers * (d - 1)
    if comm == RING:
      send_per_token = self.comm_factor * self.kv_size * self.bytes_per_elem
      t_send = length * (send_per_token * inv_d / bw_bytes_per_ms)
      t_block = attn * (inv_d / self.num_layers)
      comm_t = steps * (np.maximum(0.0, t_send - t_block) + self.ring_step_ms)
    else:
      per_token = 8.0 * self.hidden_size * self.bytes_per_elem
      comm_t = length * (self.num_layers * per_token * inv_d / bw_bytes_per_ms)
      comm_t = comm_t + steps * self.ring_step_ms
    return compute + comm_t

  def compute_sum(self, lengths, degrees):
    """sum_i of the compute term at each degree (a lower bound on
    sum_i t_i(d): communication is >= 0), from the moments of the lengths.

    Args:
      lengths: [B] tokens.
      degrees: int [D] degrees (>= 1).

    Returns:
      float64 [D].
    """
    length = np.asarray(lengths, np.float64)
    d = np.asarray(degrees, np.float64)
    s1, s2 = length.sum(), (length**2).sum()
    scaled = (self.a1 * s2 + self.a2 * s1) / d
    return scaled + self.eff_half * (self.a1 * s1 + self.a2 * len(length))

  def group_time(self, lengths, degree, comm=RING, crosses_node=None):
    """T(G, d) in ms of one group (all its sequences) on ``degree`` devices."""
    lengths = np.asarray(lengths)
    if lengths.size == 0:
      raise ValueError('group_time: empty group.')
    per_seq = self.sequence_times(lengths, int(degree), comm, crosses_node)
    return float(per_seq.sum() + self.beta)

  def degree_table(self, lengths, max_degree, comm=RING):
    """Per-sequence times for every degree: float64 [B, N] (d = 1..N)."""
    lengths = np.asarray(lengths, dtype=np.float64)
    degrees = np.arange(1, max_degree + 1)
    return self.sequence_times(lengths[:, None], degrees[None, :], comm)

  def time_table(
    self, lengths, bins, num_bins, max_degree, comm=RING, per_sequence=None
  ):
    """T(G_k, d) for all bins k and d = 1..max_degree.

    Args:
      lengths: [B] sequence lengths.
      bins: [B] int bin id of each sequence in [0, num_bins); every bin
        must hold at least one sequence.
      num_bins: K.
      max_degree: N.
      comm: 'ring' or 'ulysses'.
      per_sequence: optional precomputed ``degree_table`` [B, N].

    Returns:
      float64 [K, N + 1]; column 0 is +inf (no group runs on 0 devices).
    """
    bins = np.asarray(bins)
    order = np.argsort(bins, kind='stable')
    starts = np.searchsorted(bins[order], np.arange(num_bins))
    if np.any(np.diff(np.append(starts, len(bins))) == 0):
      raise ValueError('time_table: every bin must hold >= 1 sequence.')
    if per_sequence is None:
      per_sequence = self.degree_table(lengths, max_degree, comm)
    table = np.empty((num_bins, max_degree + 1))
    table[:, 1:] = np.add.reduceat(per_sequence[order], starts, axis=0)
    table[:, 1:] += self.beta
    table[:, 0] = np.inf
    return table


def flexsp_preset(**overrides) -> CostModel:
  """FlexSP's fitted 7B constants plus DHP's over-sharding penalties.

  a1, a2, beta and the bandwidth table are FlexSP's (PKU-DAIR/Hetu-Galvatron,
  ``flexSPCostModel``, 7B). The penalty terms eff_half=2048 and
  ring_step_ms=0.05 are the values of the research note's simulation; beta is
  0 there because every method pays it once per step, and per group it would
  only penalise splitting.
  """
  params = dict(
    a1=5.128e-6,
    a2=0.1839576,
    beta=0.0,
    eff_half=2048.0,
    num_layers=32,
    hidden_size=4096,
    kv_size=8192,
    bytes_per_elem=2,
    ring_step_ms=0.05,
  )
  params.update(overrides)
  return CostModel(**params)


def linear_preset(**overrides) -> CostModel:
  """FlexSP's a1/a2 with every over-sharding penalty switched off.

  Compute is exactly linear in 1/d and bandwidth never drops, the regime in
  which static full-domain context parallelism is optimal.
  """
  params = dict(eff_half=0.0, ring_step_ms=0.0, inter_node_gbps=121.0)
  params.update(overrides)
  return flexsp_preset(**params)


def calibrate(
  measurements: Sequence[tuple[Sequence[int], int, float]],
  base: CostModel,
  comm: str = RING,
  iterations: int = 20,
  relative: bool = False,
) -> CostModel:
  """Fits a1, a2 and beta of ``base`` to measured group step times.

  Non-negative least squares on T = a1 X1 + a2 X2 + beta + comm(a1), where
  X1 = sum L^2 / d / eff and X2 = sum L / d / eff; the ring term depends on
  a1 through the hidden block time, so the fit alternates with recomputing
  it (a fixed point; exact when the communication is fully exposed or
  fully hidden, as is the case for the data in the tests).

  Args:
    measurements: (lengths of the group, degree, measured ms) triples.
    base: supplies every parameter except a1, a2, beta.
    comm: 'ring' or 'ulysses'.
    iterations: fixed-point iterations.
    relative: minimise relative instead of absolute errors (each row and
      target divided by the measured time), so short steps count as much as
      long ones.

  Returns:
    A CostModel equal to ``base`` with fitted a1, a2, beta.
  """
  if len(measurements) < 3:
    raise ValueError(
      f'calibrate needs >= 3 measurements for 3 parameters, got '
      f'{len(measurements)}.'
    )
  rows, targets = [], []
  for i, (lengths, degree, ms) in enumerate(measurements):
    lengths = np.asarray(lengths, dtype=np.float64)
    if lengths.size == 0 or np.any(lengths <= 0):
      raise ValueError(f'measurement {i}: lengths must be non-empty, > 0.')
    if int(degree) != degree or degree < 1:
      raise ValueError(f'measurement {i}: degree={degree!r} must be int >= 1.')
    if not math.isfinite(ms) or ms <= 0:
      raise ValueError(f'measurement {i}: time={ms!r} must be finite, > 0.')
    eff = base.efficiency(lengths / degree)
    rows.append(
      [(lengths**2 / degree / eff).sum(), (lengths / degree / eff).sum(), 1.0]
    )
    targets.append(ms)
  x = np.array(rows)
  y = np.array(targets)
  scale = np.maximum(np.abs(x).max(axis=0), 1e-30)
  model = base
  for _ in range(iterations):
    comm_ms = np.array(
      [
        model.group_time(lengths, degree, comm)
        - model.beta
        - (model.a1 * r[0] + model.a2 * r[1])
        for (lengths, degree, _), r in zip(measurements, rows, strict=True)
      ]
    )
    w = 1.0 / y if relative else np.ones_like(y)
    coef, _ = scipy.optimize.nnls(x / scale * w[:, None], (y - comm_ms) * w)
    coef = coef / scale
    if coef[0] == 0 and coef[1] == 0:
      raise ValueError(
        'calibrate: the fit gives a1 = a2 = 0; the times do '
        'not grow with length.'
      )
    new = dataclasses.replace(model, a1=coef[0], a2=coef[1], beta=coef[2])
    if np.allclose(
      [new.a1, new.a2, new.beta],
      [model.a1, model.a2, model.beta],
      rtol=1e-12,
      atol=0,
    ):
      return new
    model = new
  return model
