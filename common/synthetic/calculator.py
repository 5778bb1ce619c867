"""A safe calculator for the `<calc>` tool: numbers, + - * /, parentheses.

The expression is tokenised and parsed by a small recursive-descent parser
(no `eval`): anything other than non-negative decimal numbers, the four
operators, unary signs, parentheses and spaces is rejected. Arithmetic is
exact (`fractions.Fraction`); results are printed as integers when whole
and otherwise as decimals rounded to 6 places.
"""

from __future__ import annotations

import fractions
import re

MAX_EXPRESSION_CHARS = 200
MAX_DEPTH = 32
MAX_ABS = 10**15
_TOKEN_RE = re.compile(r'\s*(?:(\d+(?:\.\d+)?)|([-+*/()]))')


class CalculatorError(ValueError):
  """The expression is not allowed or cannot be evaluated."""


def tokenize(expr: str) -> list[str]:
  """Splits `expr` into number and operator tokens; rejects anything else."""
  if not isinstance(expr, str):
    raise CalculatorError(f'expression must be str, got {type(expr).__name__}')
  if len(expr) > MAX_EXPRESSION_CHARS:
    raise CalculatorError(
      f'expression has {len(expr)} characters; at most '
      f'{MAX_EXPRESSION_CHARS} allowed'
    )
  out, pos, end = [], 0, len(expr.rstrip())
  while pos < end:
    m = _TOKEN_RE.match(expr, pos)
    if m is None:
      raise CalculatorError(
        f'unexpected {expr[pos:].strip()[:10]!r} at position {pos}; '
        'allowed: numbers, + - * /, parentheses'
      )
    out.append(m.group(1) or m.group(2))
    pos = m.end()
  if not out:
    raise CalculatorError('empty expression')
  return out


class _Parser:
  """expr := term (('+'|'-') term)*; term := factor (('*'|'/') factor)*;
  factor := ('+'|'-') factor | number | '(' expr ')'."""

  def __init__(self, tokens):
    self.tokens = tokens
    self.i = 0

  def peek(self):
    return self.tokens[self.i] if self.i < len(self.tokens) else None

  def take(self):
    tok = self.peek()
    if tok is None:
      raise CalculatorError('expression ends unexpectedly')
    self.i += 1
    return tok

  def expr(self, depth):
    value = self.term(depth)
    while self.peek() in ('+', '-'):
      op = self.take()
      rhs = self.term(depth)
      value = value + rhs if op == '+' else value - rhs
      _check(value)
    return value

  def term(self, depth):
    value = self.factor(depth)
    while self.peek() in ('*', '/'):
      op = self.take()
      rhs = self.factor(depth)
      if op == '*':
        value = value * rhs
      else:
        if rhs == 0:
          raise ZeroDivisionError('division by zero in calculator expression')
        value = value / rhs
      _check(value)
    return value

  def factor(self, depth):
    if depth > MAX_DEPTH:
      raise CalculatorError(f'expression nests deeper than {MAX_DEPTH}')
    tok = self.take()
    if tok in ('+', '-'):
      value = self.factor(depth + 1)
      return -value if tok == '-' else value
    if tok == '(':
      value = self.expr(depth + 1)
      if self.take() != ')':
        raise CalculatorError('missing closing parenthesis')
      return value
    if tok in ('*', '/', ')'):
      raise CalculatorError(f'unexpected {tok!r}')
    return _check(fractions.Fraction(tok))


def _check(value: fractions.Fraction) -> fractions.Fraction:
  if abs(value) > MAX_ABS:
    raise CalculatorError(f'intermediate value exceeds {MAX_ABS:.0e}')
  return value


def evaluate(expr: str) -> fractions.Fraction:
  """Evaluates `expr` exactly.

  Args:
    expr: e.g. `'(12 + 3) * 4 / 5'`.

  Returns:
    The exact value.

  Raises:
    CalculatorError: on any character or construct outside numbers,
      + - * /, unary signs and parentheses; on unbalanced parentheses,
      too long or too deep input, or values beyond `MAX_ABS`.
    ZeroDivisionError: on division by zero.
  """
  parser = _Parser(tokenize(expr))
  value = parser.expr(0)
  if parser.peek() is not None:
    raise CalculatorError(f'unexpected {parser.peek()!r} after expression')
  return value


def format_number(value: fractions.Fraction) -> str:
  """`84` for whole values, else a decimal rounded to 6 places (`3.5`)."""
  if value.denominator == 1:
    return str(value.numerator)
  text = f'{float(value):.6f}'.rstrip('0').rstrip('.')
  return '0' if text == '-0' else text


def calculate(expr: str) -> str:
  """`format_number(evaluate(expr))`."""
  return format_number(evaluate(expr))


def run_tool(expr: str) -> str:
  """The tool's reply text: the result, or `error: <reason>`.

  Never raises on bad model output (an agent loop feeds the reply back).
  """
  try:
    return calculate(expr)
  except ZeroDivisionError:
    return 'error: division by zero'
  except CalculatorError as e:
    return f'error: {e}'
