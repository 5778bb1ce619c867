"""Compositional entity names for the knowledge world.

Every name is built from a small closed set of name parts (two-syllable
invented words plus a few English words), so that the names of held-out
entities are new combinations of parts the tokenizer already knows: a name
is two or three word tokens, never an unknown word. Name parts are shared
across entities of a type, so many entities have similar names (the same
first name, the same city stem), which makes retrieval and copying harder.
"""

from __future__ import annotations

import numpy as np

_ONSETS = (
  'b', 'd', 'f', 'g', 'k', 'l', 'm', 'n', 'p', 'r', 's', 't', 'v', 'z',
  'br', 'dr', 'kr', 'st', 'th', 'sh',
)  # fmt: skip
_VOWELS = ('a', 'e', 'i', 'o', 'u', 'ai', 'ou')
_CODAS = ('', '', 'n', 'r', 'l', 's', 'k')

CITY_SUFFIXES = (
  'Falls', 'Harbor', 'Ford', 'Vale', 'Ridge', 'Springs', 'Crossing', 'Bay',
)  # fmt: skip
COMPANY_KINDS = ('Corp', 'Industries', 'Systems', 'Labs', 'Works', 'Group')
COMPANY_ALIASES = {'Corp': 'Corporation', 'Labs': 'Laboratories'}
BAND_ADJECTIVES = (
  'Silver', 'Red', 'Hollow', 'Electric', 'Quiet', 'Golden', 'Broken',
  'Wild', 'Velvet', 'Iron', 'Crystal', 'Midnight', 'Paper', 'Neon',
  'Lonely', 'Burning',
)  # fmt: skip
BAND_NOUNS = (
  'Foxes', 'Ravens', 'Engines', 'Lanterns', 'Wolves', 'Tides', 'Mirrors',
  'Comets', 'Horses', 'Bells', 'Owls', 'Rivers', 'Giants', 'Sparrows',
  'Anchors', 'Ghosts',
)  # fmt: skip
COUNTRY_FORMS = ('Republic', 'Kingdom', 'Federation')


def syllable_words(rng: np.random.Generator, n: int, taken: set[str]) -> list:
  """Draws `n` distinct capitalised two-syllable words not in `taken`.

  Args:
    rng: the random generator (advanced in place).
    n: how many words.
    taken: words to avoid; the new words are added to it.

  Returns:
    The words, in draw order.
  """
  capacity = (len(_ONSETS) * len(_VOWELS)) ** 2 * len(set(_CODAS))
  if n + len(taken) > capacity // 4:
    raise ValueError(
      f'asked for {n} name parts; the syllable inventory supports at most '
      f'{capacity // 4 - len(taken)} more'
    )
  out: list[str] = []
  while len(out) < n:
    parts = [
      _ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
      for _ in range(2)
    ]
    word = (parts[0] + parts[1] + _CODAS[rng.integers(len(_CODAS))]).title()
    if word not in taken:
      taken.add(word)
      out.append(word)
  return out


def pool_size(n_names: int, n_slots: int = 2) -> int:
  """Parts per slot so that `n_slots` slots give about 3x `n_names` names."""
  return max(3, int(np.ceil((3 * n_names) ** (1.0 / n_slots))))


def combine(
  rng: np.random.Generator,
  n: int,
  first: tuple[str, ...] | list[str],
  second: tuple[str, ...] | list[str],
  taken: set[str],
) -> list[tuple[str, str]]:
  """Draws `n` distinct (first, second) part pairs whose join is not taken.

  Args:
    rng: the random generator.
    n: number of names.
    first: parts for the first slot.
    second: parts for the second slot.
    taken: full names to avoid; new names are added to it.

  Returns:
    The part pairs.
  """
  pairs = [(a, b) for a in first for b in second if f'{a} {b}' not in taken]
  if len(pairs) < n:
    raise ValueError(
      f'only {len(pairs)} names available from {len(first)}x{len(second)} '
      f'parts, {n} needed'
    )
  idx = rng.permutation(len(pairs))[:n]
  out = [pairs[i] for i in idx]
  taken.update(f'{a} {b}' for a, b in out)
  return out
