"""`train.final_eval`: the last logged evaluation, or a fresh one."""

from common import train


def _never(params):
  raise AssertionError('evaluate must not be called')


def test_reads_the_last_steps_logged_evaluation():
  history = [
    {'step': 5, 'eval_accuracy': 0.2, 'eval_tool_calls': 1.0},
    {'step': 10, 'loss': 0.3},
    {'step': 10, 'eval_accuracy': 0.4, 'eval_tool_calls': 2.0},
  ]
  got = train.final_eval(history, _never, None, 'eval_accuracy')
  assert got == {'accuracy': 0.4, 'tool_calls': 2.0}


def test_evaluates_when_the_last_step_logged_none():
  history = [{'step': 5, 'eval_accuracy': 0.2}, {'step': 10, 'loss': 0.3}]
  calls = []

  def evaluate(params):
    calls.append(params)
    return {'accuracy': 0.9}

  got = train.final_eval(history, evaluate, 'p', 'eval_accuracy')
  assert got == {'accuracy': 0.9} and calls == ['p']
