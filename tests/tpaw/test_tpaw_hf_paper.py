"""TPAW's `paper` config end to end on a Hugging Face checkpoint.

`transformers` writes a tiny random Qwen2 (safetensors), beside it a
byte-level BPE tokenizer.json and a tokenizer_config.json with Qwen2's
ChatML chat template; the data are UltraChat-format chat JSONL files. The
`paper` config, with only the sizes overridden, runs through the same
`run(config, workdir)`: the checkpoint's tokenizer and chat template encode
the data exactly as `transformers` would.
"""

import json
import math

import pytest
import transformers

from common import tokenizers
from experiments.tpaw.configs import paper
from tests import hf_checkpoints
from tpaw import experiment

CHATML = hf_checkpoints.CHATML


def _chat(i: int) -> dict:
  a, b = i % 7 + 1, i % 5 + 2
  return {
    'messages': [
      {'role': 'system', 'content': 'You add numbers.'},
      {'role': 'user', 'content': f'What is {a} plus {b}?'},
      {'role': 'assistant', 'content': f'{a + b}'},
    ]
  }


def _write_jsonl(path, rows):
  path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
  return str(path)


@pytest.fixture(scope='module')
def hf_run(tmp_path_factory):
  root = tmp_path_factory.mktemp('tpaw_hf')
  train = [_chat(i) for i in range(24)]
  test = [_chat(i) for i in range(100, 108)]
  hf_dir = root / 'Qwen2-tiny'
  texts = [CHATML] + [m['content'] for r in train for m in r['messages']]
  tok = tokenizers.train_bpe(texts * 4, vocab_size=320)
  hf_checkpoints.write_qwen2(hf_dir, tok, context=96, chat_template=CHATML)
  c = paper.get_config()
  c.seeds = (0,)
  c.model.hf_dir = str(hf_dir)
  c.data.update(
    {
      'path': _write_jsonl(root / 'ultrachat_train.jsonl', train),
      'eval_path': _write_jsonl(root / 'ultrachat_test.jsonl', test),
      'prompt_len': 64,
      'response_len': 8,
      'num_train': 24,
      'num_eval': 8,
    }
  )
  c.sft.update({'steps': 0, 'batch_size': 8})
  c.selfplay.update(
    {
      'iterations': 2,
      'steps_per_iteration': 2,
      'batch_size': 8,
      'logprob_batch_size': 8,
      'checkpoint_every': 2,
      'log_every': 2,
    }
  )
  c.eval.batch_size = 8
  return c, train, hf_dir, root


def test_checkpoint_tokenizer_and_template_encode_as_transformers(hf_run):
  c, train, hf_dir, _ = hf_run
  task = experiment.Task(c)
  assert isinstance(task.tokenizer, tokenizers.BPETokenizer)
  # The fast tokenizer as tokenizer.json defines it (AutoTokenizer would
  # pick Qwen2's class, which imposes Qwen2's own digit-splitting regex on
  # this toy BPE; a real Qwen2 tokenizer.json carries that regex itself).
  theirs = transformers.PreTrainedTokenizerFast.from_pretrained(str(hf_dir))
  assert theirs.chat_template == CHATML
  prompt = theirs.apply_chat_template(
    train[0]['messages'][:2], tokenize=False, add_generation_prompt=True
  )
  assert prompt.endswith('<|im_start|>assistant\n')
  want = theirs(prompt, add_special_tokens=False)['input_ids']
  row = task.train.prompt[0][task.train.prompt_mask[0]].tolist()
  assert row == want
  target = task.train.target[0][task.train.target_mask[0]].tolist()
  answer = train[0]['messages'][-1]['content']
  want = theirs(answer, add_special_tokens=False)['input_ids']
  assert target == want + [theirs.eos_token_id]


@pytest.mark.slow  # compiles dominate: ~40 s idle
def test_paper_config_runs_end_to_end_on_the_checkpoint(hf_run):
  c, _, _, root = hf_run
  m = experiment.run(c, str(root / 'work'))
  for arm in experiment.ARMS:
    assert math.isfinite(m['summary'][f'em_{arm}'])
  assert (root / 'work' / 'metrics.json').is_file()
