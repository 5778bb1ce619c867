"""Multi-hop questions, golden decompositions and splits of a knowledge world.

A question is a chain: a start entity and a relation path `(r1, ..., rk)`
following one fact per hop, e0 -r1-> e1 -r2-> ... -rk-> ek. Its text nests
noun-phrase templates ("Where was the founder of Vel Corp born?"), its
golden decomposition lists, per hop, a search query naming the (already
resolved) subject, the hop's answer, the id of the document stating the
fact and the subject's canonical name (`subject`), and its answer is ek
(canonical name first, then aliases).

Splits:

* `test`: chains that mention a held-out entity anywhere (start,
  intermediate or answer) and whose path is not held out.
* `compositional`: chains over held-out relation paths (multi-hop paths
  never asked in training; every single relation of them is asked in
  training), mentioning no held-out entity.
* `train`: everything else. Chains that are both held-out-entity and
  held-out-path are not used.

Chains that revisit an entity (a band's lead singer's band) are skipped.
Each split samples its question budget evenly over hop counts and, within
a hop count, round-robin over relation paths.
"""

from __future__ import annotations

import collections

import numpy as np

from common.synthetic import relations as rel


def follow_chain(world, start: str, path) -> list[str] | None:
  """The entity ids / literal visited by `path` from `start`.

  Args:
    world: a `KnowledgeWorld`.
    start: start entity id.
    path: relation names.

  Returns:
    `[e0, e1, ..., ek]`, or None if a hop has no fact or an entity repeats.
  """
  nodes = [start]
  for r in path:
    fact = world.fact_index.get((nodes[-1], r))
    if fact is None or fact.object in nodes:
      return None
    nodes.append(fact.object)
  return nodes


def enumerate_chains(world) -> dict[tuple[str, ...], list[list[str]]]:
  """All valid chains of the world, grouped by relation path."""
  by_type = collections.defaultdict(list)
  for e in world.entities:
    by_type[e.type].append(e.id)
  out = {}
  for path in rel.relation_paths(world.config.max_hops):
    subj_type = rel.RELATIONS[path[0]].subject_type
    chains = [follow_chain(world, e, path) for e in by_type[subj_type]]
    chains = [c for c in chains if c is not None]
    if chains:
      out[path] = chains
  return out


def _choose_compositional(rng, chains_by_path, heldout, n):
  clean = {
    p: sum(not any(x in heldout for x in c) for c in cs)
    for p, cs in chains_by_path.items()
  }
  multi = [p for p in sorted(chains_by_path) if len(p) > 1 and clean[p] > 0]
  per_hop = collections.Counter(len(p) for p in multi)
  chosen = []
  for i in rng.permutation(len(multi)):
    if len(chosen) == n:
      break
    p = multi[i]
    if per_hop[len(p)] > 1:  # keep at least one train path per hop count
      per_hop[len(p)] -= 1
      chosen.append(p)
  return sorted(chosen)


def _budget(n: int, available: dict[int, int]) -> dict[int, int]:
  """Splits `n` evenly over hop counts, capped by what is available."""
  out = {h: 0 for h in available}
  left = n
  open_hops = [h for h in sorted(available) if available[h] > 0]
  while left > 0 and open_hops:
    share, extra = divmod(left, len(open_hops))
    for i, h in enumerate(open_hops):
      out[h] += share + (i < extra)
    left = 0
    for h in open_hops:
      if out[h] > available[h]:
        left += out[h] - available[h]
        out[h] = available[h]
    open_hops = [h for h in open_hops if out[h] < available[h]]
  return out


def _sample(rng, items: list[tuple[tuple[str, ...], list[str]]], n: int):
  """Round-robin over paths, per hop count; returns chosen (path, chain)."""
  by_hop = collections.defaultdict(lambda: collections.defaultdict(list))
  for path, chain in items:
    by_hop[len(path)][path].append(chain)
  budget = _budget(
    n, {h: sum(map(len, ps.values())) for h, ps in by_hop.items()}
  )
  chosen = []
  for h in sorted(by_hop):
    keyed = []
    paths = sorted(by_hop[h])
    path_rank = rng.permutation(len(paths))
    for pi, p in enumerate(paths):
      cs = by_hop[h][p]
      for rank, ci in enumerate(rng.permutation(len(cs))):
        keyed.append(((rank, path_rank[pi]), p, cs[ci]))
    keyed.sort(key=lambda x: x[0])
    chosen.extend((p, c) for _, p, c in keyed[: budget[h]])
  return [chosen[i] for i in rng.permutation(len(chosen))]


def _name(world, node: str) -> str:
  e = world.entity_by_id.get(node)
  return e.name if e is not None else node


def render_question(rng, world, path, chain, split: str, qid: str) -> dict:
  """The question dict for one chain (templates drawn from `rng`)."""
  k = world.config.num_templates
  pick = lambda ts: ts[rng.integers(min(k, len(ts)))]
  start = world.entity_by_id[chain[0]]
  phrase = start.name
  if start.aliases and rng.random() < world.config.alias_prob:
    phrase = start.aliases[rng.integers(len(start.aliases))]
  for r in path[:-1]:
    phrase = pick(rel.RELATIONS[r].np).format(s=phrase)
  text = pick(rel.RELATIONS[path[-1]].question).format(s=phrase)
  decomposition = []
  for i, r in enumerate(path):
    fact = world.fact_index[(chain[i], r)]
    decomposition.append(
      {
        'query': pick(rel.RELATIONS[r].query).format(s=_name(world, chain[i])),
        'answer': _name(world, chain[i + 1]),
        'doc_id': fact.doc_id,
        'subject': _name(world, chain[i]),
      }
    )
  last = world.entity_by_id.get(chain[-1])
  answers = [last.name, *last.aliases] if last is not None else [chain[-1]]
  return {
    'id': qid,
    'question': text,
    'golden_answers': answers,
    'hops': len(path),
    'decomposition': decomposition,
    'split': split,
    'relations': list(path),
    'entities': list(chain),
  }


def make_questions(rng: np.random.Generator, world):
  """Questions of all splits and the held-out (compositional) paths.

  Args:
    rng: random generator (advanced in place).
    world: a `KnowledgeWorld` with entities, facts and documents.

  Returns:
    `(questions, compositional_paths)`.
  """
  cfg = world.config
  heldout = {e.id for e in world.entities if e.heldout}
  chains_by_path = enumerate_chains(world)
  comp = set(
    _choose_compositional(
      rng, chains_by_path, heldout, cfg.num_compositional_paths
    )
  )
  pools = {'train': [], 'test': [], 'compositional': []}
  for path, chains in sorted(chains_by_path.items()):
    for c in chains:
      touches = any(x in heldout for x in c)
      if path in comp and not touches:
        pools['compositional'].append((path, c))
      elif touches and path not in comp:
        pools['test'].append((path, c))
      elif not touches:
        pools['train'].append((path, c))
  budgets = {
    'train': cfg.train_questions,
    'test': cfg.test_questions,
    'compositional': cfg.compositional_questions,
  }
  questions = []
  for split in ('train', 'test', 'compositional'):
    for i, (path, chain) in enumerate(
      _sample(rng, pools[split], budgets[split])
    ):
      questions.append(
        render_question(rng, world, path, chain, split, f'{split}-{i:05d}')
      )
  return questions, sorted(comp)
