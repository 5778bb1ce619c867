"""Baseline attacks with the common protocol: SBA, GTA, UGBA, DPGBA.

* SBA-Samp / SBA-Gen: a fixed Erdos-Renyi trigger structure (p = 0.5);
  features copied from random real nodes (Samp) or drawn from the per-column
  Gaussian of the real features (Gen); random poisoned nodes.
* GTA: an adaptive generator (MLP d -> d, feature head d -> s d, edge head
  d -> s(s-1)/2 with a straight-through threshold) trained bi-level against
  a supervised GCN surrogate with the target loss only; random V_P.
* UGBA: GTA's generator plus the homophily loss and cluster-degree V_P.
* DPGBA: the generator plus an OOD detector trained to tell trigger from
  real features, an adversarial term against it and adaptive weights
  (1 + exp(-p_t)) on the target loss.
Every trigger is attached by one edge target -> trigger node 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from graph_attacks import triggers


def first_node_attach(m: int, n: int) -> jax.Array:
  """`[m, n]` attachment weights: one edge to trigger node 0."""
  return jnp.zeros((m, n)).at[:, 0].set(1.0)


class Detector(nnx.Module):
  """DPGBA's OOD detector: MLP F -> h -> 2 (0 = real, 1 = trigger)."""

  def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
    self.l1 = nnx.Linear(dim, hidden, rngs=rngs)
    self.l2 = nnx.Linear(hidden, 2, rngs=rngs)

  def __call__(self, x):
    return self.l2(jax.nn.relu(self.l1(x)))


class Generator(nnx.Module):
  """GTA/UGBA/DPGBA trigger generator conditioned on the target features."""

  def __init__(
    self, dim: int, size: int, *, rngs: nnx.Rngs, detector_hidden: int = 0
  ):
    if size < 2:
      raise ValueError(f'trigger size {size} must be >= 2')
    self.size = size
    self.mlp = nnx.Linear(dim, dim, rngs=rngs)
    self.feat = nnx.Linear(dim, size * dim, rngs=rngs)
    self.edge = nnx.Linear(dim, size * (size - 1) // 2, rngs=rngs)
    if detector_hidden:
      self.detector = Detector(dim, detector_hidden, rngs=rngs)

  def __call__(self, x, key=None, mode='eval'):
    """x `[M, F]` -> (feats `[M,n,F]`, inner `[M,n,n]`, attach `[M,n]`)."""
    del key, mode
    m, f = x.shape
    h = jax.nn.relu(self.mlp(x))
    feats = self.feat(h).reshape(m, self.size, f)
    gates = triggers.straight_through(jax.nn.sigmoid(self.edge(h)))
    inner = triggers.pairs_to_matrix(gates, self.size)
    return feats, inner, first_node_attach(m, self.size)


class SBATrigger(nnx.Module):
  """SBA's random trigger (no training).

  Args:
    real_features: `[R, F]` features of nodes the attacker may copy.
    size: trigger size s.
    kind: 'samp' (copy random real rows) or 'gen' (column Gaussian).
    edge_prob: Erdos-Renyi probability of the fixed structure.
    seed: seed of the structure.
  """

  def __init__(
    self,
    real_features,
    size: int = 3,
    kind: str = 'samp',
    edge_prob: float = 0.5,
    seed: int = 0,
  ):
    if kind not in ('samp', 'gen'):
      raise ValueError(f"unknown SBA kind {kind!r}; allowed: 'samp', 'gen'")
    if not 0.0 <= edge_prob <= 1.0:
      raise ValueError(f'edge_prob={edge_prob} must lie in [0, 1]')
    rng = np.random.RandomState(seed)
    a, b = np.triu_indices(size, 1)
    upper = (rng.rand(a.size) < edge_prob).astype(np.float32)
    real = jnp.asarray(real_features)
    # Variables (not constants): the module is a pytree whose arrays are
    # traced arguments of the jitted evaluation (`functional.module_fn`).
    self.inner = nnx.Variable(
      triggers.pairs_to_matrix(jnp.asarray(upper), size)
    )
    self.real = nnx.Variable(real)
    self.mean = nnx.Variable(real.mean(0))
    self.std = nnx.Variable(real.std(0))
    self.size, self.kind = size, kind

  def __call__(self, x, key, mode='eval'):
    del mode
    m, f = x.shape
    real = self.real[...]
    if self.kind == 'samp':
      idx = jax.random.randint(key, (m, self.size), 0, real.shape[0])
      feats = real[idx]
    else:
      noise = jax.random.normal(key, (m, self.size, f))
      feats = self.mean[...] + self.std[...] * noise
    inner = jnp.broadcast_to(self.inner[...], (m, self.size, self.size))
    return feats, inner, first_node_attach(m, self.size)
