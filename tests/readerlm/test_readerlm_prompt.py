"""Input preparation: the model card's cleaning and prompt format."""

import pytest

from readerlm import prompt


def test_clean_html_removes_what_the_card_removes():
  html = (
    '<html><head><meta charset="utf-8"><link rel="x" href="y">'
    '<style>p{color:red}</style><script type="t">var a = "</p>";</script>'
    '</head><body><!-- hidden --><p>Kept</p><SCRIPT>x()</SCRIPT></body></html>'
  )
  out = prompt.clean_html(html)
  assert out == '<html><head></head><body><p>Kept</p></body></html>'


def test_svg_and_base64_are_optional():
  html = (
    '<svg width="2"><path d="M0"/></svg>'
    '<img src="data:image/png;base64,AAAA" alt="a">'
  )
  assert prompt.clean_html(html) == html
  out = prompt.clean_html(html, clean_svg=True, clean_base64=True)
  assert out == '<svg width="2">this is a placeholder</svg><img src="#"/>'


def test_markdown_and_json_prompts_match_the_card():
  md = prompt.instruction_prompt('<p>x</p>')
  assert md == (
    'Extract the main content from the given HTML and convert it to '
    'Markdown format.\n```html\n<p>x</p>\n```'
  )
  js = prompt.instruction_prompt('<p>x</p>', schema={'type': 'object'})
  assert js.startswith(prompt.JSON_INSTRUCTION + '\n```html\n<p>x</p>\n```\n')
  assert js.endswith(
    'The JSON schema is as follows:```json\n{"type": "object"}\n```'
  )
  text = '{\n  "type": "object"\n}'
  assert prompt.instruction_prompt('x', schema=text).endswith(
    f'```json\n{text}\n```'
  )


def test_chat_prompt_is_chatml_with_generation_prompt():
  assert prompt.chat_prompt('hi') == (
    '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n'
  )
  assert prompt.chat_prompt('hi', system='s').startswith(
    '<|im_start|>system\ns<|im_end|>\n'
  )


@pytest.mark.parametrize(
  'data,expected',
  [
    (b'\xef\xbb\xbf<p>caf\xc3\xa9</p>', '<p>café</p>'),
    (
      b'<meta charset="latin-1"><p>caf\xe9</p>',
      '<meta charset="latin-1"><p>café</p>',
    ),
    (b'<p>caf\xe9</p>', '<p>café</p>'),  # not UTF-8: cp1252 fallback
    (b'<p>a\x00b</p>', '<p>ab</p>'),
  ],
)
def test_decode_html_never_raises(data, expected):
  assert prompt.decode_html(data) == expected


def test_clean_html_refuses_bytes():
  with pytest.raises(TypeError, match='decode_html'):
    prompt.clean_html(b'<p>x</p>')


def test_strip_fences():
  assert prompt.strip_fences('```markdown\n# A\n```') == '# A'
  assert prompt.strip_fences('# A') == '# A'
