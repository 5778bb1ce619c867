"""`safety.split_general`: two disjoint halves with the same mix of kinds."""

from common.synthetic import safety


def test_split_general_is_disjoint_balanced_and_deterministic():
  task = safety.build(
    safety.SafetyTaskConfig(num_knowledge=9, num_arithmetic=6, num_topics=2)
  )
  fit, heldout = safety.split_general(task)
  assert set(fit) | set(heldout) == set(task.general)
  assert not set(fit) & set(heldout)
  kinds = lambda xs, k: sum(e.kind == k for e in xs)  # noqa: E731
  assert (kinds(fit, 'knowledge'), kinds(heldout, 'knowledge')) == (5, 4)
  assert (kinds(fit, 'arithmetic'), kinds(heldout, 'arithmetic')) == (3, 3)
  assert safety.split_general(task) == (fit, heldout)
  other = safety.build(
    safety.SafetyTaskConfig(
      seed=1, num_knowledge=9, num_arithmetic=6, num_topics=2
    )
  )
  assert safety.split_general(other)[0] != fit
