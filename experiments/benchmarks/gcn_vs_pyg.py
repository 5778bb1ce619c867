"""Benchmark: 2-layer GCN training on Cora, this project vs PyTorch Geometric.

Same data (our Planetoid loader, converted for PyG), same model (GCN, hidden
16, dropout 0.5, Adam lr 0.01, L2 weight decay 5e-4 on all parameters),
same 200 epochs of full-batch training each followed by an evaluation
forward pass, on the same machine. Reported with dropout on (the setting of
the papers) and off: with dropout on, most of each epoch is the random mask
over the dense 2708 x 1433 input, so the "on" ratio mostly compares random
number generators. Also reports the batched ASR evaluation throughput
(triggered 2-hop subgraphs per second).

  python -m experiments.benchmarks.gcn_vs_pyg [--data_dir DIR] [--seeds 3]

Needs the `bench` extra (torch 2.13.0 CPU, torch_geometric 2.8.1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from graph_attacks import evaluate
from graph_attacks import models
from graph_attacks import train
from graph_attacks.data import planetoid

DEFAULT_DIR = os.path.join(
  os.path.dirname(__file__), '..', '..', '..', 'shared', 'data', 'planetoid'
)


def run_jax(ds, split, seed, dropout, epochs):
  n = ds.num_nodes
  model = models.build_model(
    'gcn', ds.graph.nodes.shape[1], 16, 7, seed=seed, dropout_rate=dropout
  )
  t0 = time.perf_counter()
  model, _ = train.fit_classifier(
    model,
    ds.graph,
    ds.labels,
    split.mask('train', n),
    epochs=epochs,
    learning_rate=0.01,
    weight_decay=5e-4,
    seed=seed,
    val_mask=split.mask('val', n),
  )
  logits = train.predict(model, ds.graph)
  acc = float(train.masked_accuracy(logits, ds.labels, split.mask('test', n)))
  return time.perf_counter() - t0, acc


def run_pyg(ds, split, seed, dropout, epochs):
  import torch
  import torch.nn.functional as F
  from torch_geometric.nn import GCNConv

  torch.manual_seed(seed)
  x = torch.tensor(np.asarray(ds.graph.nodes))
  ei = torch.tensor(
    np.stack([ds.graph.senders, ds.graph.receivers]), dtype=torch.long
  )
  y = torch.tensor(ds.labels, dtype=torch.long)
  tr, va, te = (
    torch.tensor(split.mask(k, ds.num_nodes)) for k in ('train', 'val', 'test')
  )

  class Net(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.c1 = GCNConv(x.shape[1], 16)
      self.c2 = GCNConv(16, 7)

    def forward(self):
      h = F.dropout(x, dropout, self.training)
      h = F.relu(self.c1(h, ei))
      h = F.dropout(h, dropout, self.training)
      return self.c2(h, ei)

  net = Net()
  opt = torch.optim.Adam(net.parameters(), lr=0.01, weight_decay=5e-4)
  t0 = time.perf_counter()
  best, best_state = -1.0, None
  for _ in range(epochs):
    net.train()
    opt.zero_grad()
    F.cross_entropy(net()[tr], y[tr]).backward()
    opt.step()
    net.eval()
    with torch.no_grad():
      acc = (net()[va].argmax(1) == y[va]).float().mean().item()
    if acc > best:
      best = acc
      best_state = {k: v.clone() for k, v in net.state_dict().items()}
  net.load_state_dict(best_state)
  net.eval()
  with torch.no_grad():
    acc = (net()[te].argmax(1) == y[te]).float().mean().item()
  return time.perf_counter() - t0, acc


def asr_throughput(ds, split, repeats=3):
  """Triggered 2-hop subgraphs per second through a trained GCN."""
  n = ds.num_nodes
  model = models.build_model('gcn', ds.graph.nodes.shape[1], 16, 7, seed=0)
  model, _ = train.fit_classifier(
    model,
    ds.graph,
    ds.labels,
    split.mask('train', n),
    epochs=50,
    learning_rate=0.01,
    weight_decay=5e-4,
    seed=0,
  )
  batch = evaluate.subgraph_batch(ds.graph, split.test)
  real = jnp.asarray(ds.graph.nodes[split.train])

  def trigger(x, key):
    m = x.shape[0]
    idx = jax.random.randint(key, (m, 3), 0, real.shape[0])
    return (
      real[idx],
      jnp.ones((m, 3, 3)) - jnp.eye(3),
      jnp.zeros((m, 3)).at[:, 0].set(1.0),
    )

  fn = lambda g: train.predict(model, g)
  evaluate.attack_success_rate(fn, batch, trigger, 0)  # compile
  t0 = time.perf_counter()
  for r in range(repeats):
    evaluate.attack_success_rate(fn, batch, trigger, 0, seed=r)
  return repeats * batch.centers.size / (time.perf_counter() - t0), batch


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument(
    '--data_dir', default=os.environ.get('PLANETOID_DIR', DEFAULT_DIR)
  )
  ap.add_argument('--seeds', type=int, default=3)
  ap.add_argument('--epochs', type=int, default=200)
  ap.add_argument('--threads', type=int, default=2)
  ap.add_argument(
    '--smoke', action='store_true', help='1 seed, 10 epochs (a quick check)'
  )
  args = ap.parse_args()
  if args.smoke:
    args.seeds, args.epochs = 1, 10
  import torch

  torch.set_num_threads(args.threads)
  ds, split = planetoid.load_planetoid(args.data_dir, 'cora')
  print(
    f'jax {jax.__version__} ({jax.devices()[0].platform}), torch '
    f'{torch.__version__}, torch threads {args.threads}, '
    f'cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}'
  )
  ratios = {}
  for dropout in (0.5, 0.0):
    # Compile once (seed-independent shapes), then time cached runs.
    t_first, _ = run_jax(ds, split, 100, dropout, args.epochs)
    jt, ja, pt, pa = [], [], [], []
    for seed in range(args.seeds):
      t, a = run_jax(ds, split, seed, dropout, args.epochs)
      jt.append(t)
      ja.append(a)
      t, a = run_pyg(ds, split, seed, dropout, args.epochs)
      pt.append(t)
      pa.append(a)
    j, p = statistics.median(jt), statistics.median(pt)
    ratios[dropout] = p / j
    print(
      f'dropout {dropout}: jax {j:.2f} s (first call with compile '
      f'{t_first:.2f} s), acc {np.mean(ja):.3f} ± {np.std(ja):.3f}; '
      f'pyg {p:.2f} s, acc {np.mean(pa):.3f} ± {np.std(pa):.3f}; '
      f'pyg/jax {p / j:.2f}'
    )
  tput, batch = asr_throughput(ds, split)
  print(
    f'asr_eval: {tput:.0f} subgraphs/s ({batch.centers.size} triggered '
    f'2-hop subgraphs, union of {batch.num_real_nodes} nodes)'
  )
  print(
    f'gcn_vs_pyg: ratio={ratios[0.5]:.2f} (PyG time / JAX time, GCN '
    f'on Cora, {args.epochs} epochs, dropout 0.5; dropout off: '
    f'{ratios[0.0]:.2f}; asr_eval {tput:.0f} subgraphs/s)'
  )


if __name__ == '__main__':
  main()
