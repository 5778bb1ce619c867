"""Tiny Hugging Face checkpoints written by `transformers`, for paper paths.

`write_qwen2(directory, tokenizer, context)` saves a random one-layer Qwen2
(GQA, tied head, safetensors) with `save_pretrained`, beside the
tokenizer's tokenizer.json and a tokenizer_config.json naming Qwen2.5's
eos and pad tokens (and a chat template if given): the layout of a real
Qwen2.5-Instruct directory at toy size.
"""

import json
import pathlib

import transformers


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
