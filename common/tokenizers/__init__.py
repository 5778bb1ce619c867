"""Tokenizers for the embedded task worlds (Hugging Face `tokenizer.json`)."""

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
