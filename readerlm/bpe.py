"""A byte-level BPE tokenizer (`tokenizers`), saved as tokenizer.json.

`train_bpe(texts, vocab_size)` trains a GPT-2/Qwen2-style byte-level BPE
(ByteLevel pre-tokenizer and decoder, so any text round-trips) with the
special tokens `<pad>`, `<eos>` and Qwen2's ChatML `<|im_start|>`,
`<|im_end|>`, `<|endoftext|>`. `BPETokenizer` wraps it with the interface
the project's SFT batches and sampler use (`encode`, `decode`, `pad_id`,
`eos_id`, `vocab_size`); `save`/`load` read and write `tokenizer.json`, the
file a Hugging Face directory carries (`common.models.load_hf_tokenizer`
loads it too).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable

import tokenizers
from tokenizers import decoders
from tokenizers import models as tok_models
from tokenizers import pre_tokenizers
from tokenizers import trainers

SPECIALS = ('<pad>', '<eos>', '<|im_start|>', '<|im_end|>', '<|endoftext|>')


class BPETokenizer:
  """`tokenizers.Tokenizer` with the project's tokenizer interface."""

  def __init__(self, tok: tokenizers.Tokenizer):
    self.tok = tok
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    self.pad_id = ids['<pad>'] if ids['<pad>'] is not None else 0
    eos = ids['<eos>'] if ids['<eos>'] is not None else ids['<|im_end|>']
    if eos is None:
      raise ValueError('tokenizer has neither <eos> nor <|im_end|>')
    self.eos_id = eos
    self.eos_ids = tuple(
      i for i in (ids['<eos>'], ids['<|im_end|>'], ids['<|endoftext|>'])
      if i is not None
    )  # fmt: skip

  @property
  def vocab_size(self) -> int:
    return self.tok.get_vocab_size()

  def encode(self, text: str, add_eos: bool = False) -> list[int]:
    ids = self.tok.encode(text).ids
    return ids + [self.eos_id] if add_eos else ids

  def decode(self, ids) -> str:
    return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)

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
    path = pathlib.Path(path)
    if path.is_dir():
      path = path / 'tokenizer.json'
    return cls(tokenizers.Tokenizer.from_file(str(path)))


def train_bpe(
  texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2
) -> BPETokenizer:
  """Trains a byte-level BPE on `texts` (deterministic for fixed input)."""
  if vocab_size < 256 + len(SPECIALS):
    raise ValueError(
      f'vocab_size={vocab_size} must be >= {256 + len(SPECIALS)} (256 byte '
      'symbols plus the special tokens)'
    )
  tok = tokenizers.Tokenizer(tok_models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=vocab_size,
    min_frequency=min_frequency,
    special_tokens=list(SPECIALS),
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False,
  )
  tok.train_from_iterator(list(texts), trainer=trainer)
  return BPETokenizer(tok)
