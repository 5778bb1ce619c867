"""`common.tokenizers.bpe`: byte-level BPE, a Hugging Face directory's
tokenizer files, and parity with `transformers`' fast tokenizer."""

import json

import pytest
import transformers

from common import models
from common.tokenizers import bpe

_TEXTS = ['<p>Hello world</p>', '# Heading\n\n- item', 'héllo 世界'] * 20


def test_round_trip_save_and_hf_loader(tmp_path):
  tok = bpe.train_bpe(_TEXTS, vocab_size=300)
  s = '<p>héllo 世界</p> # Heading'
  assert tok.decode(tok.encode(s)) == s
  ids = tok.encode('x', add_eos=True)
  assert ids[-1] == tok.eos_id == tok.tok.token_to_id('<eos>')
  assert tok.pad_id == tok.tok.token_to_id('<pad>')
  assert tok.eos_ids == tuple(
    tok.tok.token_to_id(t) for t in ('<eos>', '<|im_end|>', '<|endoftext|>')
  )
  path = tok.save(tmp_path)
  assert path.endswith('tokenizer.json')
  again = bpe.BPETokenizer.load(tmp_path)
  assert again.encode(s) == tok.encode(s)
  assert models.load_hf_tokenizer(str(tmp_path)).encode(s).ids == tok.encode(s)
  with pytest.raises(ValueError, match='vocab_size'):
    bpe.train_bpe(_TEXTS, vocab_size=100)


def _hf_dir(tmp_path, **config):
  bpe.train_bpe(_TEXTS, vocab_size=300).save(tmp_path)
  (tmp_path / bpe.CONFIG_FILE).write_text(json.dumps(config))
  return tmp_path


def test_tokenizer_config_names_eos_pad_and_chat_template(tmp_path):
  template = '{% for m in messages %}{{ m.content }}{% endfor %}'
  d = _hf_dir(
    tmp_path,
    eos_token='<|im_end|>',
    pad_token={'content': '<|endoftext|>', 'special': True},
    chat_template=template,
  )
  tok = bpe.BPETokenizer.load(d)
  assert tok.eos_id == tok.tok.token_to_id('<|im_end|>')
  assert tok.eos_ids[0] == tok.eos_id and len(set(tok.eos_ids)) == 3
  assert tok.pad_id == tok.tok.token_to_id('<|endoftext|>')
  assert tok.chat_template == template


def test_encoding_equals_transformers_fast_tokenizer(tmp_path):
  d = _hf_dir(tmp_path, eos_token='<|im_end|>', pad_token='<|endoftext|>')
  ours = bpe.BPETokenizer.load(d)
  theirs = transformers.PreTrainedTokenizerFast(
    tokenizer_file=str(d / 'tokenizer.json'),
    eos_token='<|im_end|>',
    pad_token='<|endoftext|>',
  )
  for s in ['<p>Hello 世界</p>', '# Heading\n\n- item x', 'héllo<|im_end|>']:
    want = theirs(s, add_special_tokens=False)['input_ids']
    assert ours.encode(s) == want
    assert ours.decode(want) == theirs.decode(want, skip_special_tokens=True)
  assert ours.eos_id == theirs.eos_token_id
  assert ours.pad_id == theirs.pad_token_id


@pytest.mark.parametrize(
  'write, match',
  [
    (
      lambda d: (d / bpe.CONFIG_FILE).write_text('{"eos_token": '),
      'not valid JSON',
    ),
    (lambda d: (d / bpe.CONFIG_FILE).write_text('[1]'), 'JSON object'),
    (
      lambda d: (d / bpe.CONFIG_FILE).write_text('{"eos_token": "<nope>"}'),
      "eos_token '<nope>' is not in the tokenizer vocabulary",
    ),
    (
      lambda d: (d / bpe.CONFIG_FILE).write_text('{"chat_template": [{}]}'),
      'chat_template must be a string',
    ),
    (lambda d: (d / 'tokenizer.json').write_text('{"x"'), 'not a readable'),
    (lambda d: (d / 'tokenizer.json').unlink(), 'does not exist'),
  ],
)
def test_bad_files_are_errors_naming_the_file(tmp_path, write, match):
  d = _hf_dir(tmp_path)
  write(d)
  with pytest.raises((ValueError, FileNotFoundError), match=match) as info:
    bpe.BPETokenizer.load(d)
  assert str(tmp_path) in str(info.value)


def test_split_html_tags_makes_each_frequent_tag_one_token(tmp_path):
  texts = ['<li><a href="/x">Home</a></li><p>some text.</p> and <p>'] * 20
  html = bpe.train_bpe(texts, vocab_size=400, split_html_tags=True)
  plain = bpe.train_bpe(texts, vocab_size=400)
  s = '<li><a href="/x">Home</a></li><p>new words, héllo 世界.</p>'
  pieces = [html.decode([i]) for i in html.encode(s)]
  # each tag of the corpus is one token; '.' stays apart from '</p>'
  for tag in ('<li>', '<a href="/x">', '</a>', '</li>', '<p>', '</p>'):
    assert tag in pieces, (tag, pieces)
  assert pieces[-2:] == ['.', '</p>']
  # GPT-2's split never lets a token span '<' and '>' of a tag
  assert not any(p.startswith('<') and p.endswith('>') for p in
                 (plain.decode([i]) for i in plain.encode(s)))  # fmt: skip
  assert len(html.encode(s)) < len(plain.encode(s))
  for t in (html, plain):  # both round-trip any text
    for text in (s, '<<a>>< b>x</ >', 'a < b > c', ''):
      assert t.decode(t.encode(text)) == text
  html.save(tmp_path)
  again = bpe.BPETokenizer.load(tmp_path)
  assert again.encode(s) == html.encode(s)
  fast = transformers.PreTrainedTokenizerFast(
    tokenizer_file=str(tmp_path / 'tokenizer.json')
  )
  assert fast.encode(s, add_special_tokens=False) == html.encode(s)
