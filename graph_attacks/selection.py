"""CP-GBA's periodic model selection by validation ASR.

The released code (`novdream/CP-GBA`) interrupts the trigger training
every 10 epochs, poisons the graph with the current repository, fits a
fresh prompt victim on it and keeps the repository whose validation ASR is
the highest. `ValidationSelector` is that check as the `on_epoch` hook of
`bilevel.run_bilevel`: every `every` epochs (and after the last one) it
attaches the current triggers to V_P (relabelled y_t), tunes a Gprompt
prompt and head on the frozen pre-trained GNN for `epochs` steps, scores
the triggered 2-hop subgraphs of the validation nodes and keeps a copy of
the attack's state when the ASR beats the best so far (ties keep the
earlier one). `restore` loads the best state back.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from graph_attacks import evaluate
from graph_attacks import functional
from graph_attacks import graph as graph_lib
from graph_attacks import prompt as prompt_lib
from graph_attacks import triggers


class ValidationSelector:
  """`on_epoch(epoch, attack, surrogate)` hook keeping the best attack.

  Args:
    graph: the attacker's training graph (unpadded, NumPy leaves).
    labels: int `[N]` labels (V_L's are used).
    train_mask: `[N]` 1 on V_L.
    poisoned: int `[P]` V_P.
    val_nodes: int `[V]` nodes whose triggered subgraphs score the ASR.
    target: y_t.
    pretrained: the frozen pre-trained GNN of the prompt victim.
    num_classes: C.
    every: check every `every` epochs (>= 1).
    total_epochs: the run's epochs (the last one is always checked).
    epochs: prompt-tuning steps per check.
    learning_rate: the prompt's learning rate.
    seed: seed of the prompt victims and the trigger draws.
  """

  def __init__(
    self,
    graph,
    labels,
    train_mask,
    poisoned,
    val_nodes,
    target: int,
    pretrained: prompt_lib.PretrainedGCN,
    num_classes: int,
    *,
    every: int,
    total_epochs: int,
    epochs: int,
    learning_rate: float,
    seed: int,
  ):
    if every < 1:
      raise ValueError(f'select_every={every} must be >= 1 (0 turns it off)')
    self.graph = graph
    self.labels = np.asarray(labels)
    self.train_mask = np.asarray(train_mask, np.float32)
    self.poisoned = np.asarray(poisoned)
    self.batch = evaluate.subgraph_batch(graph, val_nodes)
    self.target, self.pretrained = int(target), pretrained
    self.num_classes = num_classes
    self.every, self.total = int(every), int(total_epochs)
    self.epochs, self.learning_rate = int(epochs), float(learning_rate)
    self.seed = int(seed)
    self.best_asr, self.best_epoch, self.best_state = -1.0, -1, None
    self.history: list[tuple[int, float]] = []

  def due(self, epoch: int) -> bool:
    """Whether epoch `epoch` (0-based) ends with a check."""
    return (epoch + 1) % self.every == 0 or epoch + 1 == self.total

  def validation_asr(self, attack: nnx.Module) -> float:
    """ASR of `attack`'s current triggers on a freshly tuned prompt victim."""
    trigger_fn = functional.module_fn(attack, 'eval')
    g = jax.tree.map(jnp.asarray, self.graph)
    idx = jnp.asarray(self.poisoned)
    trig = trigger_fn(g.nodes[idx], jax.random.key(self.seed))
    g = jax.tree.map(np.asarray, triggers.attach_triggers(g, idx, *trig))
    extra = g.nodes.shape[0] - self.graph.nodes.shape[0]
    y = self.labels.copy()
    y[self.poisoned] = self.target
    m = self.train_mask.copy()
    m[self.poisoned] = 1.0
    g = graph_lib.pad_to_bucket(g)
    n = g.nodes.shape[0]
    y = graph_lib.pad_rows(np.concatenate([y, np.zeros(extra, y.dtype)]), n)
    m = graph_lib.pad_rows(np.concatenate([m, np.zeros(extra, m.dtype)]), n)
    victim = prompt_lib.fit_prompt(
      self.pretrained,
      g,
      y,
      m,
      self.num_classes,
      kind='gprompt',
      epochs=self.epochs,
      learning_rate=self.learning_rate,
      weight_decay=0.0,
      seed=self.seed,
    )
    pred = evaluate.triggered_predictions(
      functional.module_fn(victim), self.batch, trigger_fn, seed=self.seed
    )
    return float((pred == self.target).mean())

  def __call__(self, epoch: int, attack: nnx.Module, surrogate) -> bool:
    del surrogate
    if not self.due(epoch):
      return False
    asr = self.validation_asr(attack)
    self.history.append((epoch, asr))
    if asr > self.best_asr:
      self.best_asr, self.best_epoch = asr, epoch
      self.best_state = jax.tree.map(jnp.copy, nnx.state(attack))
    return False

  def restore(self, attack: nnx.Module) -> None:
    """Loads the best checked state into `attack` (no-op before a check)."""
    if self.best_state is not None:
      nnx.update(attack, self.best_state)
