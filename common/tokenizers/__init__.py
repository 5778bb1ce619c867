"""Tokenizers (Hugging Face `tokenizer.json`): the embedded worlds' word
tokenizer and byte-level BPE, e.g. a checkpoint's own (`BPETokenizer.load`).
"""

from common.tokenizers import bpe
from common.tokenizers import chat_template
from common.tokenizers.bpe import BPETokenizer
from common.tokenizers.bpe import train_bpe
from common.tokenizers.word_tokenizer import BOS
from common.tokenizers.word_tokenizer import CONTROL_TOKENS
from common.tokenizers.word_tokenizer import DIGIT_TOKENS
from common.tokenizers.word_tokenizer import EOS
from common.tokenizers.word_tokenizer import PAD
from common.tokenizers.word_tokenizer import TAG_TOKENS
from common.tokenizers.word_tokenizer import TOKENIZER_FILE
from common.tokenizers.word_tokenizer import UNK
from common.tokenizers.word_tokenizer import EncodedBatch
from common.tokenizers.word_tokenizer import WordTokenizer

__all__ = [
  'BPETokenizer',
  'bpe',
  'chat_template',
  'train_bpe',
  'BOS',
  'CONTROL_TOKENS',
  'DIGIT_TOKENS',
  'EOS',
  'PAD',
  'TAG_TOKENS',
  'TOKENIZER_FILE',
  'UNK',
  'EncodedBatch',
  'WordTokenizer',
]
