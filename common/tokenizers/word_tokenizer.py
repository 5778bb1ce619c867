"""Word-level tokenizer for the embedded task worlds.

Built on the Hugging Face `tokenizers` library (`models.WordLevel`), so it
saves and loads as a standard `tokenizer.json` that
`tokenizers.Tokenizer.from_file` (and `transformers`' fast tokenizers) read.

Tokenization rules:

* Tags (`<think>`, `<search>`, `<answer>`, `<calc>`, ...) and the control
  tokens (`<pad>`, `<bos>`, `<eos>`, `<unk>`) are added tokens: each is one
  token wherever it appears, even without surrounding spaces.
* Text is split on whitespace, then into runs of letters and single
  punctuation characters (`"born?"` -> `born`, `?`).
* Numbers are split into digits. The first digit of a number is a plain
  digit token (`1`), every following digit a continuation token (`##8`), so
  `1873` -> `1 ##8 ##7 ##3`. The vocabulary therefore holds all numbers with
  20 tokens, arithmetic works digit by digit, and decoding glues the
  continuation digits back (`"1873"`), keeping `"13 3"` and `"133"` apart.
  A normalizer inserts the `##` markers, so text must not itself contain
  `##` next to a digit.
* Words not in the vocabulary map to `<unk>`; with `strict=True`, encoding
  raises instead and names the unknown words.

Ids: `<pad>` is 0, then `<bos>`, `<eos>`, `<unk>`, the tags, any extra
tokens, the 20 digit tokens and finally the corpus words ordered by
decreasing count, ties broken alphabetically (deterministic).
"""

from __future__ import annotations

import collections
import json
import os
import re
from collections.abc import Iterable
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import tokenizers
from tokenizers import decoders
from tokenizers import models
from tokenizers import normalizers
from tokenizers import pre_tokenizers

PAD = '<pad>'
BOS = '<bos>'
EOS = '<eos>'
UNK = '<unk>'
CONTROL_TOKENS = (PAD, BOS, EOS, UNK)
TAG_TOKENS = (
  '<think>',
  '</think>',
  '<search>',
  '</search>',
  '<information>',
  '</information>',
  '<answer>',
  '</answer>',
  '<calc>',
  '</calc>',
  '<result>',
  '</result>',
  '<warning>',
  '</warning>',
)
DIGIT_TOKENS = tuple(str(d) for d in range(10)) + tuple(
  f'##{d}' for d in range(10)
)
TOKENIZER_FILE = 'tokenizer.json'
_META_FILE = 'word_tokenizer.json'
_TOKEN_PATTERN = r'##\d|\d|[^\W\d]+|[^\w\s]'
_DIGIT_JOIN = r'(?<=\d)(?=\d)'


class EncodedBatch(NamedTuple):
  """A padded batch.

  Attributes:
    ids: `[B, T]` int32 token ids, padded with `pad_id`.
    mask: `[B, T]` bool, True on real tokens.
  """

  ids: np.ndarray
  mask: np.ndarray


def _normalizer() -> normalizers.Normalizer:
  return normalizers.Replace(tokenizers.Regex(_DIGIT_JOIN), ' ##')


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
  return pre_tokenizers.Sequence(
    [
      pre_tokenizers.WhitespaceSplit(),
      pre_tokenizers.Split(
        tokenizers.Regex(_TOKEN_PATTERN), behavior='isolated'
      ),
    ]
  )


def _check_tag(token: str) -> None:
  if not isinstance(token, str) or not re.fullmatch(r'<[^<>\s]+>', token):
    raise ValueError(
      f'extra token {token!r} must look like a tag: "<name>" without '
      'spaces or angle brackets inside'
    )


class WordTokenizer:
  """Word-level tokenizer with single-token tags and digit-split numbers.

  Create with `WordTokenizer.build(texts)` or `WordTokenizer.load(dir)`.
  """

  def __init__(
    self, tokenizer: tokenizers.Tokenizer, tags: Sequence[str], strict=False
  ):
    """Wraps a configured `tokenizers.Tokenizer` (use `build` or `load`).

    Args:
      tokenizer: a WordLevel tokenizer whose vocabulary starts with the
        control tokens in the order `<pad>, <bos>, <eos>, <unk>`.
      tags: the added (non-control) tokens, e.g. `<think>`.
      strict: if True, `encode` raises on words outside the vocabulary.
    """
    self._tok = tokenizer
    self._tags = tuple(tags)
    self.strict = bool(strict)
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    for i, name in enumerate(CONTROL_TOKENS):
      if vocab.get(name) != i:
        raise ValueError(
          f'control token {name!r} must have id {i}, got {vocab.get(name)}'
        )
    self._vocab = vocab
    self._inv = {i: t for t, i in vocab.items()}
    self._control_ids = frozenset(range(len(CONTROL_TOKENS)))

  # ------------------------------------------------------------------ build
  @classmethod
  def build(
    cls,
    texts: Iterable[str],
    extra_tokens: Sequence[str] = (),
    strict: bool = False,
  ) -> WordTokenizer:
    """Builds the vocabulary from a corpus.

    Args:
      texts: corpus texts; every word in them gets an id. Tags (`<...>`)
        in the texts are not counted as words.
      extra_tokens: further single-token tags (e.g. `('<sep>',)`), added
        after the built-in tags.
      strict: default strictness of `encode` (see class docstring).

    Returns:
      The tokenizer.
    """
    if isinstance(texts, str):
      raise TypeError('texts must be an iterable of strings, not a string')
    tags = list(TAG_TOKENS)
    for t in extra_tokens:
      _check_tag(t)
      if t in CONTROL_TOKENS:
        raise ValueError(f'extra token {t!r} is a control token already')
      if t not in tags:
        tags.append(t)
    norm, pre = _normalizer(), _pre_tokenizer()
    counts: collections.Counter[str] = collections.Counter()
    tag_set = set(tags) | set(CONTROL_TOKENS)
    tag_re = re.compile('|'.join(re.escape(t) for t in sorted(tag_set)))
    for i, text in enumerate(texts):
      if not isinstance(text, str):
        raise TypeError(f'texts[{i}] is {type(text).__name__}, not str')
      for piece in tag_re.split(text):
        words = pre.pre_tokenize_str(norm.normalize_str(piece))
        counts.update(w for w, _ in words)
    fixed = list(CONTROL_TOKENS) + tags + list(DIGIT_TOKENS)
    vocab = {t: i for i, t in enumerate(fixed)}
    for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
      if word not in vocab:
        vocab[word] = len(vocab)
    tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.normalizer = _normalizer()
    tok.pre_tokenizer = _pre_tokenizer()
    tok.decoder = decoders.WordPiece(prefix='##', cleanup=True)
    tok.add_special_tokens(
      [
        tokenizers.AddedToken(t, special=True, normalized=False)
        for t in CONTROL_TOKENS
      ]
    )
    tok.add_tokens(
      [tokenizers.AddedToken(t, special=False, normalized=False) for t in tags]
    )
    return cls(tok, tags, strict=strict)

  # ----------------------------------------------------------- properties
  @property
  def vocab_size(self) -> int:
    """Number of ids (all ids are in `[0, vocab_size)`)."""
    return len(self._vocab)

  @property
  def pad_id(self) -> int:
    return self._vocab[PAD]

  @property
  def bos_id(self) -> int:
    return self._vocab[BOS]

  @property
  def eos_id(self) -> int:
    return self._vocab[EOS]

  @property
  def unk_id(self) -> int:
    return self._vocab[UNK]

  @property
  def tags(self) -> tuple[str, ...]:
    """The single-token tags, in id order."""
    return self._tags

  @property
  def hf_tokenizer(self) -> tokenizers.Tokenizer:
    """The underlying `tokenizers.Tokenizer`."""
    return self._tok

  def token_id(self, token: str) -> int:
    """Id of a tag or vocabulary word; raises KeyError if absent."""
    if token not in self._vocab:
      hint = ''
      if token.startswith('<'):
        hint = f'; known tags: {", ".join(CONTROL_TOKENS + self._tags)}'
      raise KeyError(f'token {token!r} is not in the vocabulary{hint}')
    return self._vocab[token]

  def id_to_token(self, i: int) -> str:
    if i not in self._inv:
      raise KeyError(f'id {i} is outside [0, {self.vocab_size})')
    return self._inv[i]

  # --------------------------------------------------------------- encode
  def tokenize(self, text: str) -> list[str]:
    """The token strings of `text` (no bos/eos)."""
    return self._tok.encode(text, add_special_tokens=False).tokens

  def unknown_words(self, text: str) -> list[str]:
    """Words of `text` that are not in the vocabulary (map to `<unk>`)."""
    enc = self._tok.encode(text, add_special_tokens=False)
    out = []
    for tid, (s, e) in zip(enc.ids, enc.offsets, strict=True):
      if tid == self.unk_id and text[s:e] != UNK:
        out.append(text[s:e])
    return out

  def encode(
    self,
    text: str,
    add_bos: bool = False,
    add_eos: bool = False,
    strict: bool | None = None,
  ) -> list[int]:
    """Encodes one text.

    Args:
      text: the text.
      add_bos: prepend `<bos>`.
      add_eos: append `<eos>`.
      strict: raise ValueError on unknown words (default: `self.strict`).

    Returns:
      The token ids.
    """
    if not isinstance(text, str):
      raise TypeError(f'text must be str, got {type(text).__name__}')
    strict = self.strict if strict is None else strict
    ids = self._tok.encode(text, add_special_tokens=False).ids
    if strict and self.unk_id in ids:
      unknown = self.unknown_words(text)
      if unknown:
        raise ValueError(
          f'unknown words {unknown[:10]} in text {text[:80]!r} (strict mode)'
        )
    return [self.bos_id] * add_bos + list(ids) + [self.eos_id] * add_eos

  def encode_batch(
    self,
    texts: Sequence[str],
    max_len: int,
    left_pad: bool = False,
    add_bos: bool = False,
    add_eos: bool = False,
    truncate: str | None = None,
    strict: bool | None = None,
  ) -> EncodedBatch:
    """Encodes and pads a batch to a fixed length.

    Args:
      texts: `B` texts.
      max_len: `T`, the padded length.
      left_pad: pad on the left (prompts for generation) instead of the
        right.
      add_bos: prepend `<bos>` to each text.
      add_eos: append `<eos>` to each text.
      truncate: what to do with a text longer than `max_len`: None (the
        default) raises ValueError; 'right' keeps the first `max_len`
        tokens; 'left' keeps the last `max_len` tokens.
      strict: as in `encode`.

    Returns:
      `EncodedBatch(ids [B, T] int32, mask [B, T] bool)`.
    """
    if isinstance(texts, str):
      raise TypeError('texts must be a sequence of strings, not a string')
    if not isinstance(max_len, int) or max_len <= 0:
      raise ValueError(f'max_len must be a positive int, got {max_len!r}')
    if truncate not in (None, 'left', 'right'):
      raise ValueError(
        f"truncate must be None, 'left' or 'right', got {truncate!r}"
      )
    ids = np.full((len(texts), max_len), self.pad_id, np.int32)
    mask = np.zeros((len(texts), max_len), bool)
    for b, text in enumerate(texts):
      row = self.encode(text, add_bos=add_bos, add_eos=add_eos, strict=strict)
      if len(row) > max_len:
        if truncate is None:
          raise ValueError(
            f'texts[{b}] has {len(row)} tokens > max_len={max_len}; raise '
            "max_len or pass truncate='left'/'right'"
          )
        row = row[:max_len] if truncate == 'right' else row[-max_len:]
      n = len(row)
      sl = slice(max_len - n, max_len) if left_pad else slice(0, n)
      ids[b, sl] = row
      mask[b, sl] = True
    return EncodedBatch(ids, mask)

  # --------------------------------------------------------------- decode
  def decode(self, ids: Sequence[int] | np.ndarray, skip_special=True) -> str:
    """Decodes one sequence of ids.

    Args:
      ids: `[T]` ids.
      skip_special: drop the control tokens `<pad>`, `<bos>`, `<eos>`
        (tags and `<unk>` are always kept).

    Returns:
      The text, with continuation digits glued (`1 ##8` -> `18`) and no
      space before `.`, `,`, `?` and `!`.
    """
    arr = np.asarray(ids)
    if arr.ndim != 1:
      raise ValueError(f'decode takes a 1-D id sequence, got {arr.shape}')
    out = []
    for i in arr.tolist():
      if not 0 <= i < self.vocab_size:
        raise ValueError(f'id {i} is outside [0, {self.vocab_size})')
      if skip_special and i in self._control_ids and i != self.unk_id:
        continue
      out.append(i)
    return self._tok.decode(out, skip_special_tokens=False)

  def decode_batch(self, ids: np.ndarray, skip_special=True) -> list[str]:
    """Decodes `[B, T]` ids row by row (padding is dropped)."""
    arr = np.asarray(ids)
    if arr.ndim != 2:
      raise ValueError(f'decode_batch takes [B, T] ids, got {arr.shape}')
    return [self.decode(row, skip_special=skip_special) for row in arr]

  # ------------------------------------------------------------ save/load
  def save(self, directory: str | os.PathLike) -> str:
    """Writes `tokenizer.json` (and a small metadata file) to `directory`.

    Returns:
      The path of `tokenizer.json`.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, TOKENIZER_FILE)
    self._tok.save(path)
    with open(os.path.join(directory, _META_FILE), 'w') as f:
      json.dump({'tags': list(self._tags), 'strict': self.strict}, f)
    return path

  @classmethod
  def load(cls, directory: str | os.PathLike) -> WordTokenizer:
    """Loads a tokenizer saved with `save`.

    A bare `tokenizer.json` (no metadata file) also loads; its tags are then
    the non-control added tokens.
    """
    path = os.path.join(directory, TOKENIZER_FILE)
    if not os.path.isfile(path):
      raise FileNotFoundError(f'no {TOKENIZER_FILE} in {directory}')
    tok = tokenizers.Tokenizer.from_file(path)
    meta_path = os.path.join(directory, _META_FILE)
    if os.path.isfile(meta_path):
      with open(meta_path) as f:
        meta = json.load(f)
      return cls(tok, meta['tags'], strict=meta['strict'])
    added = tok.get_added_tokens_decoder()
    tags = [
      a.content
      for _, a in sorted(added.items())
      if a.content not in CONTROL_TOKENS
    ]
    return cls(tok, tags)

  def __repr__(self) -> str:
    return (
      f'WordTokenizer(vocab_size={self.vocab_size}, tags={len(self._tags)}, '
      f'strict={self.strict})'
    )
