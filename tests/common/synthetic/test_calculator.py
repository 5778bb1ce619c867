"""Tests for the safe calculator tool."""

import fractions

import pytest

from common.synthetic import calculator as calc


@pytest.mark.parametrize(
  'expr, want',
  [
    ('12 * 7', 84),
    ('2 + 3 * 4', 14),
    ('(2 + 3) * 4', 20),
    ('20 - 4 - 3', 13),  # left-associative
    ('64 / 4 / 2', 8),
    ('7 / 2', fractions.Fraction(7, 2)),
    ('-3 + 5', 2),
    ('-(3 + 4) * 2', -14),
    ('2 * -3', -6),
    ('1.5 * 4', 6),
    ('((((9))))', 9),
    ('  8-2*3  ', 2),
    ('0.1 + 0.2', fractions.Fraction(3, 10)),  # exact, no float error
  ],
)
def test_evaluate(expr, want):
  assert calc.evaluate(expr) == want


@pytest.mark.parametrize(
  'value, text',
  [
    (fractions.Fraction(84), '84'),
    (fractions.Fraction(-14), '-14'),
    (fractions.Fraction(7, 2), '3.5'),
    (fractions.Fraction(1, 3), '0.333333'),
    (fractions.Fraction(2, 3), '0.666667'),
    (fractions.Fraction(-1, 10**9), '0'),
  ],
)
def test_format_number(value, text):
  assert calc.format_number(value) == text


@pytest.mark.parametrize(
  'expr, match',
  [
    ('__import__("os")', 'unexpected'),
    ('2 ** 3', "unexpected '\\*'"),
    ('7 // 2', "unexpected '/'"),
    ('7 % 2', 'unexpected'),
    ('2 ^ 3', 'unexpected'),
    ('1e5', 'unexpected'),
    ('abs(3)', 'unexpected'),
    ('x + 1', 'unexpected'),
    ('1 2', "unexpected '2' after"),
    ('(1 + 2', 'ends unexpectedly'),
    ('1 + 2)', "unexpected '\\)' after"),
    ('()', "unexpected '\\)'"),
    ('', 'empty'),
    ('   ', 'empty'),
    ('1 +', 'ends unexpectedly'),
    ('1' * 201, 'at most 200'),
    ('(' * 40 + '1' + ')' * 40, 'deeper'),
    ('99999999 * 99999999', 'exceeds'),
  ],
)
def test_rejects(expr, match):
  with pytest.raises(calc.CalculatorError, match=match):
    calc.evaluate(expr)


def test_rejects_non_string():
  with pytest.raises(calc.CalculatorError, match='must be str'):
    calc.evaluate(12)


@pytest.mark.parametrize('expr', ['1 / 0', '5 / (2 - 2)', '0 / 0.0'])
def test_division_by_zero(expr):
  with pytest.raises(ZeroDivisionError, match='division by zero'):
    calc.evaluate(expr)


def test_run_tool_never_raises():
  assert calc.run_tool('12 * 7') == '84'
  assert calc.run_tool('1 / 0') == 'error: division by zero'
  assert calc.run_tool('import os').startswith('error: unexpected')
  assert calc.calculate('10 / 4') == '2.5'
