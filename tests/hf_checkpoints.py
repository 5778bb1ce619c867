"""Tiny Hugging Face checkpoints written by `transformers`, for paper paths.

`write_qwen2(directory, tokenizer, context)` saves a random one-layer Qwen2
(GQA, tied head, safetensors) with `save_pretrained`, beside the
tokenizer's tokenizer.json and a tokenizer_config.json naming Qwen2.5's
eos and pad tokens (and a chat template if given): the layout of a real
Qwen2.5-Instruct directory at toy size. `for_safety_task` writes one with
the safety task's word tokenizer; `assert_loads_and_refuses` checks that an
experiment starts from the checkpoint and refuses one of another
tokenizer.
"""

import json
import pathlib

import numpy as np
import pytest
import transformers

from common import models
from common import tokenizers
from common.synthetic import safety
from common.train import sft_world

# Qwen2's ChatML chat template, reduced to plain chats (no tools).
CHATML = (
  '{% for message in messages %}'
  "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] }}"
  "{{ '<|im_end|>' + '\\n' }}"
  '{% endfor %}'
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def write_qwen2(
  directory: pathlib.Path,
  tokenizer,
  context: int,
  chat_template: str | None = None,
):
  """Writes the checkpoint; returns the `transformers` model."""
  tokenizer.save(directory)
  config = {'eos_token': '<|im_end|>', 'pad_token': '<|endoftext|>'}
  if chat_template is not None:
    config['chat_template'] = chat_template
  (directory / 'tokenizer_config.json').write_text(json.dumps(config))
  model = transformers.Qwen2ForCausalLM(
    transformers.Qwen2Config(
      vocab_size=tokenizer.vocab_size,
      hidden_size=32,
      intermediate_size=64,
      num_hidden_layers=1,
      num_attention_heads=4,
      num_key_value_heads=2,
      max_position_embeddings=context,
      tie_word_embeddings=True,
    )
  )
  model.save_pretrained(str(directory), safe_serialization=True)
  return model


def assert_loads_and_refuses(init_model, config, hf_dir, tmp_dir):
  """`init_model(config)` is the checkpoint in `hf_dir` (its config and
  weights, exactly: the same safetensors loaded twice), and the same call
  with a checkpoint of another word tokenizer is refused."""
  got = init_model(config)
  _, want = models.load_hf(str(hf_dir))
  assert got.config == want.config
  np.testing.assert_array_equal(
    np.asarray(got.embed.embedding[...]), np.asarray(want.embed.embedding[...])
  )
  other = tokenizers.WordTokenizer.build(['one two three'])
  write_qwen2(pathlib.Path(tmp_dir) / 'other', other, context=16)
  c2 = config.copy_and_resolve_references()
  c2.model.hf_dir = str(pathlib.Path(tmp_dir) / 'other')
  with pytest.raises(ValueError, match='not the task tokenizer'):
    init_model(c2)


def for_safety_task(config, directory: pathlib.Path):
  """A checkpoint with the safety task's word tokenizer (the one
  `config.task` builds) and its context; sets `config.model.hf_dir`."""
  task = safety.build(sft_world.task_config(config))
  p_len, r_len = safety.lengths(task)
  write_qwen2(directory, task.tokenizer, context=p_len + r_len)
  config.model.hf_dir = str(directory)
  return task
