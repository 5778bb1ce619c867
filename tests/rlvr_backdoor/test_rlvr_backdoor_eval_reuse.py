"""The step-0 evaluation of every arm reuses the warm start's evaluation."""

from rlvr_backdoor import experiment


def test_step0_returns_base_and_later_steps_evaluate():
  calls = []

  def evaluate(params):
    calls.append(params)
    return {'clean_accuracy': float(params)}

  base = {'clean_accuracy': 0.25}
  fn = experiment._reuse_at_start(evaluate, base)
  out = fn(0.75, 0)
  assert out == base and out is not base and calls == []
  assert fn(0.75, 16) == {'clean_accuracy': 0.75} and calls == [0.75]
  # No step given (the final evaluation of an arm): always evaluates.
  assert fn(0.5) == {'clean_accuracy': 0.5} and calls == [0.75, 0.5]
