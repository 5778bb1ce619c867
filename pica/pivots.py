"""Pivot annotation of search trajectories from a golden decomposition.

PiCA labels each step of a trajectory for its conditional reward model: a
search is a pivot ('+') when it advances the golden decomposition, i.e. it
retrieves the document of the *next* golden sub-answer (by `doc_id` when the
hop has one, else by the SQuAD-normalised sub-answer appearing in the
retrieved text). The next hop only advances on a pivot. A search that does
not advance is '-'. The trajectory's last step is its end (the answer, or
the point where it ran out of turns): '+' iff the trajectory succeeded.

For a failed trajectory z is the first '-' step: the first search that
leaves the golden path, or the end step when every search was a pivot but
the answer was still wrong. A successful trajectory has no z; under the CRM
loss (`pica.hazard`) it is a survival sample whatever its intermediate
labels (PiCA: a sample is negative iff its last label is '-').

The mapping `is_pivot -> '+'` and the choice of z follow the reading of the
released code in the research note (§1.4); the paper's annotation pipeline
(PiCA-MuSiQue) is not public.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from common.rl.qa_rewards import normalize_answer


class PivotAnnotation(NamedTuple):
  """Labels of one trajectory.

  Attributes:
    labels: one bool per step, the searches then the end step (True = '+').
    z: index of the first '-' step of a failed trajectory, None if it
      succeeded.
    hops_covered: golden hops the searches advanced through.
  """

  labels: list[bool]
  z: int | None
  hops_covered: int


def _mentions(text: str, answer: str) -> bool:
  a = normalize_answer(answer)
  if not a:
    return False
  return (
    re.search(rf'(^| ){re.escape(a)}( |$)', normalize_answer(text)) is not None
  )


def annotate(
  decomposition: Sequence[dict],
  success: bool,
  retrieved_ids: Sequence[Sequence[str]] | None = None,
  informations: Sequence[str] | None = None,
) -> PivotAnnotation:
  """Labels the served searches and the end step of one trajectory.

  Args:
    decomposition: golden hops `{"query", "answer", "doc_id"?}` in order.
    success: whether the final answer was correct (and well-formed).
    retrieved_ids: per served search, the retrieved document ids.
    informations: per served search, the retrieved text (used for hops
      without `doc_id`, or when `retrieved_ids` is None).

  Returns:
    A `PivotAnnotation` with `len(searches) + 1` labels.

  Raises:
    ValueError: empty decomposition, lists of different lengths, or a hop
      that cannot be matched (no `doc_id` and no retrieved text).
  """
  if not decomposition:
    raise ValueError('annotate needs a non-empty golden decomposition')
  if retrieved_ids is None and informations is None:
    raise ValueError('pass retrieved_ids and/or informations')
  n = len(retrieved_ids if retrieved_ids is not None else informations)
  if informations is not None and len(informations) != n:
    raise ValueError(
      f'retrieved_ids has {n} searches but informations has {len(informations)}'
    )
  hop, labels = 0, []
  for t in range(n):
    pivot = False
    if hop < len(decomposition):
      golden = decomposition[hop]
      if 'doc_id' in golden and retrieved_ids is not None:
        pivot = str(golden['doc_id']) in [str(d) for d in retrieved_ids[t]]
      elif informations is not None:
        pivot = _mentions(informations[t], golden['answer'])
      else:
        raise ValueError(
          f'hop {hop} has no doc_id; pass informations to match its '
          f'sub-answer {golden["answer"]!r}'
        )
    labels.append(pivot)
    hop += pivot
  labels.append(bool(success))
  z = None if success else labels.index(False)
  return PivotAnnotation(labels, z, hop)


def label_arrays(
  annotations: Sequence[PivotAnnotation], num_steps: int
) -> dict[str, np.ndarray]:
  """Stacks annotations into CRM-loss inputs.

  Args:
    annotations: B annotations.
    num_steps: S >= the longest label list (e.g. `max_turns + 1`).

  Returns:
    `{'labels' [B, S] bool, 'valid' [B, S] bool, 'z' [B] int32}` (z = -1
    for successful trajectories); valid steps come first.
  """
  b = len(annotations)
  labels = np.zeros((b, num_steps), bool)
  valid = np.zeros((b, num_steps), bool)
  z = np.full((b,), -1, np.int32)
  for i, a in enumerate(annotations):
    if len(a.labels) > num_steps:
      raise ValueError(
        f'annotation {i} has {len(a.labels)} steps > num_steps={num_steps}'
      )
    labels[i, : len(a.labels)] = a.labels
    valid[i, : len(a.labels)] = True
    z[i] = -1 if a.z is None else a.z
  return {'labels': labels, 'valid': valid, 'z': z}
