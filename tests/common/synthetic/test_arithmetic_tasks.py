"""Tests for the arithmetic task generator and its traces."""

import dataclasses

import pytest

from common import synthetic
from common.synthetic import arithmetic as ar
from common.synthetic import calculator as calc
from common.synthetic import traces

CFG = ar.ArithmeticConfig(seed=0, train_size=400, test_size=100)


@pytest.fixture(scope='module')
def problems():
  return ar.make_problems(CFG)


def test_deterministic_and_seeded(problems):
  assert ar.make_problems(CFG) == problems
  other = ar.make_problems(dataclasses.replace(CFG, seed=1))
  assert [p.question for p in other['train']] != [
    p.question for p in problems['train']
  ]


def test_answers_and_steps_are_correct(problems):
  for split in ar.SPLITS:
    for p in problems[split]:
      assert p.split == split
      assert calc.evaluate(p.expression) == p.answer
      assert len(p.steps) == p.num_operands - 1
      prev = None
      for expr, result in p.steps:
        assert calc.evaluate(expr) == result
        assert result >= 0 and int(result) == result
        if prev is not None:  # each step starts from the previous result
          assert expr.split(' ')[0] == str(prev)
        prev = result
      assert p.steps[-1][1] == p.answer


def test_knobs_bound_operands_and_digits(problems):
  ops_seen = set()
  for p in problems['train']:
    assert CFG.min_operands <= p.num_operands <= CFG.max_operands
    for expr, _ in p.steps:
      a, op, b = expr.split(' ')
      ops_seen.add(op)
      assert 1 <= len(b) <= CFG.max_digits
  assert ops_seen == set(ar.OPS)
  hard = ar.make_problems(
    ar.ArithmeticConfig(
      min_operands=5, max_operands=5, min_digits=3, max_digits=3,
      ops=('+', '-'), train_size=50, test_size=0,
    )
  )['train']  # fmt: skip
  for p in hard:
    assert p.num_operands == 5
    assert all(len(e.split(' ')[2]) == 3 for e, _ in p.steps)


def test_test_expressions_unseen_in_train(problems):
  train = {p.expression for p in problems['train']}
  assert not train & {p.expression for p in problems['test']}


def test_both_question_forms(problems):
  qs = [p.question for p in problems['train']]
  expr_form = [
    q for q in qs if q.startswith(('What is', 'Compute', 'Calculate'))
  ]
  assert 0.3 < len(expr_form) / len(qs) < 0.7  # word_problem_prob = 0.5
  only_expr = ar.make_problems(
    dataclasses.replace(CFG, word_problem_prob=0.0, train_size=20)
  )
  for p in only_expr['train']:
    assert p.expression in p.question


@pytest.mark.parametrize(
  'first, ops, want',
  [
    (2, [('+', 3), ('*', 4)], '( 2 + 3 ) * 4'),
    (2, [('*', 3), ('+', 4)], '2 * 3 + 4'),
    (5, [('-', 1), ('-', 1)], '5 - 1 - 1'),
    (8, [('-', 2), ('/', 3), ('+', 1), ('*', 5)], '( ( 8 - 2 ) / 3 + 1 ) * 5'),
  ],
)
def test_render_expression(first, ops, want):
  assert ar.render_expression(first, ops) == want
  # The rendering evaluates like the left-nested chain.
  value = first
  for op, b in ops:
    value = calc.evaluate(f'{value} {op} {b}')
  assert calc.evaluate(want) == value


def test_traces(problems):
  p = ar.ArithmeticProblem(
    'x', 'What is 12 * 7 - 15?', '12 * 7 - 15',
    (('12 * 7', 84), ('84 - 15', 69)), 69, 3, 'train',
  )  # fmt: skip
  assert traces.arithmetic_direct_trace(p) == '<answer> 69 </answer>'
  assert traces.arithmetic_tool_trace(p) == (
    '<calc> 12 * 7 </calc> <result> 84 </result> '
    '<calc> 84 - 15 </calc> <result> 69 </result> <answer> 69 </answer>'
  )
  for q in problems['test']:
    trace = traces.arithmetic_tool_trace(q)
    calls = traces.extract_tag(trace, 'calc')
    results = traces.extract_tag(trace, 'result')
    assert results == [calc.run_tool(c) for c in calls]
    assert traces.extract_answer(trace) == str(q.answer)
  assert traces.arithmetic_prompt(p).endswith('Problem: What is 12 * 7 - 15?\n')


def test_config_validation():
  with pytest.raises(ValueError, match='min_operands'):
    ar.ArithmeticConfig(min_operands=1)
  with pytest.raises(ValueError, match='max_operands'):
    ar.ArithmeticConfig(min_operands=4, max_operands=3)
  with pytest.raises(ValueError, match='max_digits'):
    ar.ArithmeticConfig(max_digits=7)
  with pytest.raises(ValueError, match='ops'):
    ar.ArithmeticConfig(ops=('+', '^'))
  with pytest.raises(ValueError, match='ops'):
    ar.ArithmeticConfig(ops=())
  with pytest.raises(TypeError, match='ArithmeticConfig'):
    ar.make_problems({'seed': 0})


def test_too_small_problem_space_raises():
  # 2 one-digit operands with '+' only: 81 expressions, all used by train.
  cfg = ar.ArithmeticConfig(
    max_operands=2, max_digits=1, ops=('+',), train_size=3000, test_size=5
  )
  with pytest.raises(ValueError, match='could not draw 5 distinct test'):
    ar.make_problems(cfg)


def test_prompts_and_traces_tokenize_without_unk(problems):
  tok = synthetic.build_tokenizer(problems=problems['train'], strict=True)
  for p in problems['test']:  # test word problems use the same templates
    tok.encode(traces.arithmetic_prompt(p))
    ids = tok.encode(traces.arithmetic_tool_trace(p))
    assert tok.decode(ids) == traces.arithmetic_tool_trace(p)
