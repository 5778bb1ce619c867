"""Seeded, verifiable multi-step integer arithmetic problems.

A problem is a left-nested chain `((a op1 b) op2 c) ...` over integers,
shown either as an expression ("What is ( 12 * 7 ) - 15?") or as a short
word problem ("A shop has 12 apples. ..."). Every intermediate value is a
non-negative integer (subtraction never goes below zero unless
`allow_negative`, division is always exact), so the step list doubles as
the golden calculator trace. Difficulty knobs: the number of operands and
the digit count of each operand.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from common.synthetic import calculator

OPS = ('+', '-', '*', '/')
SPLITS = ('train', 'test')
_SUBJECTS = ('A shop', 'A farm', 'Mia', 'Omar', 'A library', 'The club')
_ITEMS = ('apples', 'books', 'coins', 'stamps', 'eggs', 'cards', 'shells')
_START = ('{s} has {a} {items}.', '{s} starts with {a} {items}.')
_STEP = {
  '+': ('Then {b} more {items} arrive.', '{s} gets {b} more {items}.'),
  '-': ('Then {b} {items} are sold.', '{s} gives away {b} {items}.'),
  '*': ('Then the number of {items} is multiplied by {b}.',
        'Then the stock of {items} grows {b} times.'),
  '/': ('Then the {items} are split equally into {b} boxes and one box is '
        'kept.', 'Then the number of {items} is divided by {b}.'),
}  # fmt: skip
_ASK = (
  'How many {items} are there now?',
  'How many {items} does {s2} have at the end?',
)
_EXPR_ASK = ('What is {e}?', 'Compute {e}.', 'Calculate {e}.')


@dataclasses.dataclass(frozen=True)
class ArithmeticConfig:
  """Knobs of the arithmetic task.

  Attributes:
    seed: random seed.
    min_operands: fewest numbers in a problem (>= 2).
    max_operands: most numbers in a problem.
    min_digits: fewest digits per operand (>= 1).
    max_digits: most digits per operand (<= 6).
    ops: allowed operators, a subset of `+ - * /`.
    word_problem_prob: probability of the word-problem form.
    allow_negative: let subtraction go below zero.
    train_size: problems in `train`.
    test_size: problems in `test` (their expressions never occur in train).
  """

  seed: int = 0
  min_operands: int = 2
  max_operands: int = 4
  min_digits: int = 1
  max_digits: int = 2
  ops: tuple[str, ...] = OPS
  word_problem_prob: float = 0.5
  allow_negative: bool = False
  train_size: int = 5000
  test_size: int = 500

  def __post_init__(self):
    def need(ok, field, allowed):
      if not ok:
        raise ValueError(
          f'ArithmeticConfig.{field}={getattr(self, field)!r}; allowed: '
          f'{allowed}'
        )

    need(2 <= self.min_operands <= 8, 'min_operands', '2..8')
    need(
      self.min_operands <= self.max_operands <= 8,
      'max_operands',
      f'{self.min_operands}..8',
    )
    need(1 <= self.min_digits <= 6, 'min_digits', '1..6')
    need(
      self.min_digits <= self.max_digits <= 6,
      'max_digits',
      f'{self.min_digits}..6',
    )
    need(
      len(self.ops) > 0 and set(self.ops) <= set(OPS)
      and len(set(self.ops)) == len(self.ops),
      'ops',
      f'distinct operators from {OPS}',
    )  # fmt: skip
    need(0 <= self.word_problem_prob <= 1, 'word_problem_prob', '[0, 1]')
    need(self.train_size >= 0, 'train_size', '>= 0')
    need(self.test_size >= 0, 'test_size', '>= 0')

  @classmethod
  def tiny(cls, seed: int = 0, **overrides) -> ArithmeticConfig:
    kw = dict(seed=seed, train_size=60, test_size=20)
    kw.update(overrides)
    return cls(**kw)


@dataclasses.dataclass(frozen=True)
class ArithmeticProblem:
  """One problem.

  Attributes:
    id: e.g. `train-00012`.
    question: the prompt text.
    expression: the expression with minimal parentheses (evaluates to
      `answer` under the usual precedence).
    steps: `(expression, result)` per operation, e.g. `('12 * 7', 84)`.
    answer: the integer answer.
    num_operands: numbers in the problem.
    split: `train` or `test`.
  """

  id: str
  question: str
  expression: str
  steps: tuple[tuple[str, int], ...]
  answer: int
  num_operands: int
  split: str


def _operand(rng, cfg) -> int:
  d = int(rng.integers(cfg.min_digits, cfg.max_digits + 1))
  return int(rng.integers(10 ** (d - 1) if d > 1 else 1, 10**d))


def _divisors_in(value: int, lo: int, hi: int) -> list[int]:
  return [b for b in range(max(lo, 2), hi + 1) if value % b == 0]


def _next_step(rng, cfg, cur: int) -> tuple[str, int] | None:
  """An operator and operand valid for the running value `cur` (or None)."""
  lo = 1 if cfg.min_digits == 1 else 10 ** (cfg.min_digits - 1)
  hi = 10**cfg.max_digits - 1
  for op in rng.permutation(list(cfg.ops)):
    op = str(op)
    if op == '/':
      divs = _divisors_in(cur, lo, hi) if cur else list(range(max(lo, 2), hi))
      if divs:
        return op, int(divs[rng.integers(len(divs))])
      continue
    b = _operand(rng, cfg)
    if op == '-' and not cfg.allow_negative and b > cur:
      if cur < lo:
        continue
      b = int(rng.integers(lo, cur + 1))
    return op, b
  return None  # only '/' (no divisor) or '-' (cur too small) were allowed


def render_expression(first: int, ops: list[tuple[str, int]]) -> str:
  """Left-nested chain with minimal parentheses, spaced tokens."""
  text, low_top = str(first), False
  for op, b in ops:
    if op in '*/' and low_top:
      text = f'( {text} )'
    text = f'{text} {op} {b}'
    low_top = op in '+-'
  return text


def make_problem(rng, cfg: ArithmeticConfig, pid: str, split: str):
  """Draws one problem (redraws chains that hit a dead end)."""
  n = int(rng.integers(cfg.min_operands, cfg.max_operands + 1))
  for _ in range(100):
    first = cur = _operand(rng, cfg)
    ops, steps = [], []
    for _ in range(n - 1):
      step = _next_step(rng, cfg, cur)
      if step is None:
        break
      op, b = step
      step_expr = f'{cur} {op} {b}'
      cur = int(calculator.evaluate(step_expr))
      ops.append((op, b))
      steps.append((step_expr, cur))
    if len(ops) == n - 1:
      break
  else:
    raise ValueError(
      f'ops={cfg.ops} with digits {cfg.min_digits}..{cfg.max_digits} '
      f'cannot build a {n}-operand chain (e.g. no exact divisor); allow more '
      'operators'
    )
  expression = render_expression(first, ops)
  if rng.random() < cfg.word_problem_prob:
    s = _SUBJECTS[rng.integers(len(_SUBJECTS))]
    items = _ITEMS[rng.integers(len(_ITEMS))]
    s2 = s[0].lower() + s[1:] if s.startswith(('A ', 'The ')) else s
    parts = [
      _START[rng.integers(len(_START))].format(s=s, a=first, items=items)
    ]
    for op, b in ops:
      t = _STEP[op][rng.integers(len(_STEP[op]))]
      parts.append(t.format(s=s, b=b, items=items))
    parts.append(_ASK[rng.integers(len(_ASK))].format(items=items, s2=s2))
    question = ' '.join(parts)
  else:
    question = _EXPR_ASK[rng.integers(len(_EXPR_ASK))].format(e=expression)
  return ArithmeticProblem(
    pid, question, expression, tuple(steps), cur, n, split
  )


def make_problems(cfg: ArithmeticConfig) -> dict[str, list[ArithmeticProblem]]:
  """Train and test problems; test expressions never occur in train.

  Args:
    cfg: the config.

  Returns:
    `{"train": [...], "test": [...]}`.

  Raises:
    ValueError: if the knobs allow too few distinct problems for the sizes.
  """
  if not isinstance(cfg, ArithmeticConfig):
    raise TypeError(f'cfg must be an ArithmeticConfig, got {type(cfg)}')
  out: dict[str, list[ArithmeticProblem]] = {}
  seen: set[str] = set()
  for split, size, stream in (
    ('train', cfg.train_size, 0),
    ('test', cfg.test_size, 1),
  ):
    rng = np.random.default_rng([cfg.seed, stream])
    problems, tries = [], 0
    while len(problems) < size:
      tries += 1
      if tries > 50 * size + 1000:
        raise ValueError(
          f'could not draw {size} distinct {split} problems; widen '
          'max_operands/max_digits or lower the sizes'
        )
      p = make_problem(rng, cfg, f'{split}-{len(problems):05d}', split)
      if split == 'test' and p.expression in seen:
        continue
      if split == 'train':
        seen.add(p.expression)
      problems.append(p)
    out[split] = problems
  return out


def template_texts() -> list[str]:
  """Template words (for tokenizer vocabularies)."""
  out = list(_SUBJECTS) + list(_ITEMS)
  for t in _START + _ASK + _EXPR_ASK + sum(_STEP.values(), ()):
    out.append(re.sub(r'\{\w+\}', ' ', t))
  out.extend(s.lower() for s in _SUBJECTS)
  return out
