"""`common.tokenizers.chat_template.render` against `transformers`."""

import pytest
import tokenizers as hf_tokenizers
import transformers

from common.tokenizers import chat_template

# A Llama-3-style template: bos_token, a role check, whitespace control.
TEMPLATE = (
  '{{ bos_token }}'
  '{% for message in messages %}'
  "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
  "{{ raise_exception('unknown role ' + message['role']) }}"
  '{% endif %}'
  "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
  "{{ message['content'] | trim }}<|eot_id|>"
  '{% endfor %}\n'
  '{% if add_generation_prompt %}'
  '<|start_header_id|>assistant<|end_header_id|>\n\n'
  '{% endif %}'
)
MESSAGES = [
  {'role': 'system', 'content': ' Be brief. '},
  {'role': 'user', 'content': 'Hi?'},
  {'role': 'assistant', 'content': 'Hello.'},
  {'role': 'user', 'content': 'Bye?'},
]


def _theirs():
  tok = hf_tokenizers.Tokenizer(hf_tokenizers.models.WordLevel({'<s>': 0}))
  return transformers.PreTrainedTokenizerFast(
    tokenizer_object=tok, bos_token='<s>', chat_template=TEMPLATE
  )


@pytest.mark.parametrize('cue', [True, False])
def test_render_equals_apply_chat_template(cue):
  want = _theirs().apply_chat_template(
    MESSAGES, tokenize=False, add_generation_prompt=cue
  )
  got = chat_template.render(TEMPLATE, MESSAGES, cue, bos_token='<s>')
  assert got == want
  # Hand-checked: trim, the header layout and the cue.
  assert got.startswith('<s><|start_header_id|>system<|end_header_id|>\n\n')
  assert 'Be brief.<|eot_id|>' in got
  end = 'assistant<|end_header_id|>\n\n' if cue else 'Bye?<|eot_id|>'
  assert got.endswith(end)


def test_template_errors_are_value_errors():
  with pytest.raises(ValueError, match='unknown role tool'):
    chat_template.render(TEMPLATE, [{'role': 'tool', 'content': 'x'}])
  with pytest.raises(ValueError, match='Jinja syntax error at line 1'):
    chat_template.render('{% for m in messages %}', MESSAGES)
