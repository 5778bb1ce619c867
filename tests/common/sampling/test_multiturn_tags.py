"""`common.sampling.multiturn`'s closing tags as token sequences: one id
for a word tokenizer, several pieces (with and without a leading space)
for a byte-level BPE."""

import pytest

from common import tokenizers
from common.sampling import multiturn


def _bpe():
  texts = ['<search> who wrote it </search> <answer> Ann </answer>'] * 20
  return tokenizers.train_bpe(texts + ['a b c d e f'] * 5, vocab_size=280)


def test_word_tokenizer_tags_are_one_token():
  tok = tokenizers.WordTokenizer.build(
    ['who wrote it'], ['<search>', '</search>']
  )
  assert multiturn.tag_sequences(tok, '</search>') == (
    (tok.token_id('</search>'),),
  )
  with pytest.raises(ValueError, match='not in the tokenizer vocabulary'):
    multiturn.tag_sequences(tok, '</browse>')


def test_bpe_tags_are_their_pieces_alone_and_after_a_space():
  tok = _bpe()
  seqs = multiturn.tag_sequences(tok, '</search>')
  assert len(seqs) == 2
  assert [tok.decode(s) for s in seqs] == ['</search>', ' </search>']
  text = '<search> who wrote it </search>'
  ids = tok.encode(text)
  # The tag as the model writes it after a query: the spaced variant.
  assert multiturn.ended_by(ids, seqs)
  assert not multiturn.ended_by(ids[:-1], seqs)
  assert not multiturn.ended_by(tok.encode('<answer> Ann </answer>'), seqs)


def test_encode_adds_bos_only_where_the_tokenizer_has_one():
  word = tokenizers.WordTokenizer.build(['hi there'])
  assert multiturn.encode(word, 'hi', add_bos=True)[0] == word.bos_id
  bpe = _bpe()
  assert multiturn.encode(bpe, 'who', add_bos=True) == bpe.encode('who')
