"""Byte-level BPE tokenizers (`tokenizers`) in tokenizer.json files.

`BPETokenizer` wraps a `tokenizers.Tokenizer` with the interface the
project's SFT batches and sampler use (`encode`, `decode`, `pad_id`,
`eos_id`, `eos_ids`, `vocab_size`). `BPETokenizer.load(hf_dir)` reads a
Hugging Face model directory's `tokenizer.json` and, where present, its
`tokenizer_config.json` (`eos_token`, `pad_token`, `chat_template`), so a
Qwen2 or Llama checkpoint's own tokenizer drives an experiment.
`train_bpe(texts, vocab_size)` trains a GPT-2/Qwen2-style byte-level BPE
(ByteLevel pre-tokenizer and decoder, so any text round-trips) with the
special tokens `<pad>`, `<eos>` and Qwen2's ChatML `<|im_start|>`,
`<|im_end|>`, `<|endoftext|>`. With `split_html_tags=True` every HTML tag
(`<li>`, `</a>`, `<div class="nav">`) is one pre-token, so frequent tags
merge into one token each instead of the 3-7 pieces that GPT-2's split
makes of them (`HTML_PRETOKENIZE_PATTERN`); text outside tags is split as
GPT-2 does.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

import tokenizers
from tokenizers import decoders
from tokenizers import models as tok_models
from tokenizers import pre_tokenizers
from tokenizers import trainers

from common.tokenizers import chat_template

SPECIALS = ('<pad>', '<eos>', '<|im_start|>', '<|im_end|>', '<|endoftext|>')
# End-of-text markers tried in order when no eos token is named.
_EOS_CANDIDATES = ('<eos>', '<|im_end|>', '<|endoftext|>', '<|eot_id|>', '</s>')
_PAD_CANDIDATES = ('<pad>', '<|endoftext|>', '<|finetune_right_pad_id|>')
CONFIG_FILE = 'tokenizer_config.json'
# A whole tag (with a space before it, as GPT-2 joins a space to the next
# word), else GPT-2's pre-tokenizer alternatives, with '<' kept out
# of punctuation runs so that `.</p>` splits as '.' + '</p>'.
HTML_PRETOKENIZE_PATTERN = (
  r" ?</?[A-Za-z][^<>]*>|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+"
  r'| ?[^\s\p{L}\p{N}<]+| ?<|\s+(?!\S)|\s+'
)


class BPETokenizer:
  """`tokenizers.Tokenizer` with the project's tokenizer interface.

  Attributes:
    tok: the wrapped `tokenizers.Tokenizer`.
    eos_id: the id appended to targets and the first stop id.
    eos_ids: every end-of-text id the vocabulary holds (sampler stop ids).
    pad_id: the filler id.
    chat_template: the Jinja chat template of `tokenizer_config.json`, or
      None.
  """

  def __init__(
    self,
    tok: tokenizers.Tokenizer,
    eos_token: str | None = None,
    pad_token: str | None = None,
    chat_template: str | None = None,
  ):
    self.tok = tok
    self.chat_template = chat_template
    self.special_tokens = {
      k: v for k, v in (('eos_token', eos_token), ('pad_token', pad_token))
      if v is not None
    }  # fmt: skip
    self.eos_id = self._resolve('eos_token', eos_token, _EOS_CANDIDATES)
    pad = self._resolve('pad_token', pad_token, _PAD_CANDIDATES, required=False)
    self.pad_id = 0 if pad is None else pad
    ids = [tok.token_to_id(s) for s in _EOS_CANDIDATES]
    self.eos_ids = (self.eos_id,) + tuple(
      i for i in dict.fromkeys(ids) if i is not None and i != self.eos_id
    )

  def _resolve(self, field, token, candidates, required=True):
    if token is not None:
      i = self.tok.token_to_id(token)
      if i is None:
        raise ValueError(
          f'{field} {token!r} is not in the tokenizer vocabulary.'
        )
      return i
    for c in candidates:
      i = self.tok.token_to_id(c)
      if i is not None:
        return i
    if required:
      raise ValueError(
        f'the tokenizer names no {field} and has none of {candidates}.'
      )
    return None

  @property
  def vocab_size(self) -> int:
    return self.tok.get_vocab_size()

  def token_id(self, token: str) -> int:
    """The id of `token`, one entry of the vocabulary (e.g. a special
    token such as `'<|vision_start|>'`).

    Raises:
      ValueError: `token` is not one vocabulary entry.
    """
    i = self.tok.token_to_id(token)
    if i is None:
      raise ValueError(
        f'{token!r} is not one token of the vocabulary (it encodes as '
        f'{len(self.encode(token))} pieces).'
      )
    return i

  def encode(self, text: str, add_eos: bool = False) -> list[int]:
    """Token ids of `text` (no special tokens added), `eos_id` if asked."""
    ids = self.tok.encode(text, add_special_tokens=False).ids
    return ids + [self.eos_id] if add_eos else ids

  def decode(self, ids) -> str:
    """Text of `ids`, special tokens dropped."""
    return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)

  def render_chat(
    self, messages: Sequence[dict], add_generation_prompt: bool = True
  ) -> str:
    """`messages` rendered with this tokenizer's chat template.

    Raises:
      ValueError: the tokenizer has no chat template.
    """
    if self.chat_template is None:
      raise ValueError(
        f'this tokenizer has no chat_template (in {CONFIG_FILE}).'
      )
    return chat_template.render(
      self.chat_template, messages, add_generation_prompt, **self.special_tokens
    )

  def save(self, path: str | os.PathLike) -> str:
    """Writes `path` (a file, or `path/tokenizer.json` for a directory)."""
    path = pathlib.Path(path)
    if path.suffix != '.json':
      path.mkdir(parents=True, exist_ok=True)
      path = path / 'tokenizer.json'
    self.tok.save(str(path))
    return str(path)

  @classmethod
  def load(cls, path: str | os.PathLike) -> BPETokenizer:
    """Reads a tokenizer.json file, or a directory holding one.

    In a directory, `tokenizer_config.json` (if present) names the eos and
    pad tokens and the chat template, as in a Hugging Face checkpoint.

    Raises:
      FileNotFoundError: no tokenizer.json (naming the path).
      ValueError: an unreadable tokenizer.json or tokenizer_config.json,
        or a named eos/pad token missing from the vocabulary (naming the
        file).
    """
    path = pathlib.Path(path)
    config: dict[str, Any] = {}
    if path.is_dir():
      config = _read_config(path / CONFIG_FILE)
      path = path / 'tokenizer.json'
    if not path.is_file():
      raise FileNotFoundError(f'{path} does not exist (a tokenizer.json).')
    try:
      tok = tokenizers.Tokenizer.from_file(str(path))
    except Exception as e:  # the library's message names no file
      raise ValueError(
        f'{path}: not a readable tokenizer.json ({type(e).__name__}: {e}).'
      ) from e
    try:
      return cls(
        tok,
        eos_token=_token(config.get('eos_token')),
        pad_token=_token(config.get('pad_token')),
        chat_template=config.get('chat_template'),
      )
    except ValueError as e:
      raise ValueError(f'{path.parent / CONFIG_FILE}: {e}') from e


def _read_config(path: pathlib.Path) -> dict[str, Any]:
  if not path.is_file():
    return {}
  try:
    config = json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f'{path}: not valid JSON ({e}).') from e
  if not isinstance(config, dict):
    raise ValueError(f'{path}: must hold a JSON object, got {config!r:.60}.')
  template = config.get('chat_template')
  if template is not None and not isinstance(template, str):
    raise ValueError(
      f'{path}: chat_template must be a string (named templates are not '
      f'supported), got {type(template).__name__}.'
    )
  return config


def _token(value) -> str | None:
  """A tokenizer_config token entry: a string, `{"content": ...}` or null."""
  if isinstance(value, dict):
    return value.get('content')
  return value


def train_bpe(
  texts: Iterable[str],
  vocab_size: int = 2048,
  min_frequency: int = 2,
  extra_special_tokens: Sequence[str] = (),
  split_html_tags: bool = False,
) -> BPETokenizer:
  """Trains a byte-level BPE on `texts` (deterministic for fixed input).

  The vocabulary holds `SPECIALS` and `extra_special_tokens` (each one
  token, never split or merged) besides the learnt merges.
  `split_html_tags` pre-tokenizes with `HTML_PRETOKENIZE_PATTERN` (a tag
  is one pre-token) instead of GPT-2's pattern; both round-trip any text.
  """
  specials = list(dict.fromkeys([*SPECIALS, *extra_special_tokens]))
  if vocab_size < 256 + len(specials):
    raise ValueError(
      f'vocab_size={vocab_size} must be >= {256 + len(specials)} (256 byte '
      'symbols plus the special tokens)'
    )
  tok = tokenizers.Tokenizer(tok_models.BPE())
  if split_html_tags:
    tok.pre_tokenizer = pre_tokenizers.Sequence(
      [
        pre_tokenizers.Split(
          tokenizers.Regex(HTML_PRETOKENIZE_PATTERN), behavior='isolated'
        ),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
      ]
    )
  else:
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=vocab_size,
    min_frequency=min_frequency,
    special_tokens=specials,
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False,
  )
  tok.train_from_iterator(list(texts), trainer=trainer)
  return BPETokenizer(tok)
