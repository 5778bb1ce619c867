"""PiCA's `paper` config end to end on a Hugging Face checkpoint.

The knowledge world is written as Search-R1 / FlashRAG JSONL files (a
corpus, a train file with golden decompositions, two test files);
`transformers` writes a tiny random Qwen2 beside a byte-level BPE
tokenizer.json that holds Qwen2.5's `<|vision_start|>` (the released
code's placeholder) and a ChatML chat template. The `paper` config, with
only the sizes overridden (and the hazard gate off, so that every arm
runs), goes through the same `run(config, workdir)`.
"""

import math

import pytest
import transformers

from common import synthetic
from common import tokenizers
from common.sampling import multiturn
from common.synthetic import jsonl_io
from common.synthetic import traces
from experiments.pica.configs import paper
from experiments.pica.configs import tiny
from pica import config as config_lib
from pica import experiment
from pica import rollout as rollout_lib
from pica.stages import context as context_lib
from tests import hf_checkpoints

CHATML = hf_checkpoints.CHATML
PLACEHOLDER = '<|vision_start|>'


@pytest.fixture(scope='module')
def hf_run(tmp_path_factory):
  root = tmp_path_factory.mktemp('pica_hf')
  world = synthetic.build_knowledge_world(
    synthetic.KnowledgeWorldConfig(seed=0, **tiny.get_config().world)
  )
  files = jsonl_io.write_world_jsonl(world, root / 'data')
  texts = [CHATML, traces.SEARCH_R1_INSTRUCTION]
  texts += list(synthetic.vocabulary_texts(world))
  tok = tokenizers.train_bpe(
    texts * 2, vocab_size=1200, extra_special_tokens=(PLACEHOLDER,)
  )
  hf_dir = root / 'Qwen2-tiny'
  c = paper.get_config()
  c.seeds = (0,)
  c.hf_model_dir = str(hf_dir)
  c.data = {
    'corpus': files['corpus'],
    'train': files['train'],
    'test': [files['test'], files['compositional']],
  }
  c.max_prompt_len = 384
  c.rollout.update(
    {'max_turns': 3, 'max_new_tokens': 24, 'max_info_tokens': 64, 'topk': 1}
  )
  c.sft.batch_size = 8
  c.hazard.update(
    {
      'num_questions': 4,
      'samples_per_question': 2,
      'rollout_batch': 8,
      'steps': 2,
      'batch_size': 8,
      'eval_questions': 4,
      'eval_every': None,
      'patience': None,
      'min_auc': 0.0,
    }
  )
  c.rl.update({'steps': 2, 'prompts_per_step': 4, 'num_generations': 2})
  c.eval.update({'num_questions': 4, 'batch_size': 4})
  ro = rollout_lib.RolloutConfig(**c.rollout)
  need = ro.capacity(c.max_prompt_len) + 1 + ro.max_turns
  hf_checkpoints.write_qwen2(hf_dir, tok, context=need, chat_template=CHATML)
  return c, world, hf_dir, root


def test_context_reads_the_files_and_the_checkpoint(hf_run):
  c, world, hf_dir, _ = hf_run
  ctx = context_lib.Context(config_lib.resolve(c))
  assert isinstance(ctx.tok, tokenizers.BPETokenizer)
  assert ctx.placeholder_id == ctx.tok.token_id(PLACEHOLDER)
  assert len(ctx.train_qs) == len(world.split('train'))
  assert sorted(ctx.questions.evals) == ['test_compositional', 'test_test']
  assert len(ctx.questions.documents) == len(world.documents)
  assert ctx.lm_config.vocab_size == ctx.tok.vocab_size
  # The prompt is the Search-R1 instruction prompt in the checkpoint's chat
  # template, encoded as transformers encodes it.
  q = ctx.train_qs[0]
  theirs = transformers.PreTrainedTokenizerFast.from_pretrained(str(hf_dir))
  user = synthetic.search_prompt(q['question'], instruction=True)
  text = theirs.apply_chat_template(
    [{'role': 'user', 'content': user}], tokenize=False,
    add_generation_prompt=True,
  )  # fmt: skip
  assert ctx.prompt(q) == text
  want = theirs(text, add_special_tokens=False)['input_ids']
  assert multiturn.encode(ctx.tok, ctx.prompt(q), add_bos=True) == want
  assert len(want) <= c.max_prompt_len
  # The closing tags the tool loop stops on are BPE pieces, not one id.
  assert all(len(s) > 1 for s in multiturn.tag_sequences(ctx.tok, '</search>'))


def test_bad_files_and_placeholders_fail_before_any_work(hf_run, tmp_path):
  c, _, _, root = hf_run
  bad = c.copy_and_resolve_references()
  bad.data.corpus = str(tmp_path / 'missing.jsonl')
  with pytest.raises(FileNotFoundError, match='missing.jsonl'):
    context_lib.Context(config_lib.resolve(bad))
  bad = c.copy_and_resolve_references()
  bad.hazard.placeholder = '<|not_a_token|>'
  with pytest.raises(ValueError, match='hazard.placeholder'):
    context_lib.Context(config_lib.resolve(bad))
  bad = c.copy_and_resolve_references()
  bad.hf_model_dir = str(tmp_path / 'nowhere')
  with pytest.raises(ValueError, match='hf_model_dir'):
    context_lib.Context(config_lib.resolve(bad))
  bad = c.copy_and_resolve_references()
  bad.data = {'corpus': 'c.jsonl', 'train': 't.jsonl'}
  with pytest.raises(ValueError, match='config.data|data'):
    config_lib.resolve(bad)
  bad = c.copy_and_resolve_references()
  bad.data = {'corpus': 'c.jsonl', 'train': 't.jsonl', 'test': 'one.jsonl'}
  with pytest.raises(ValueError, match='data.test'):
    config_lib.resolve(bad)
  # a train file without golden decompositions cannot give pivot labels
  no_dec = tmp_path / 'train.jsonl'
  no_dec.write_text('{"question": "Who?", "golden_answers": ["x"]}\n')
  bad = c.copy_and_resolve_references()
  bad.data.train = str(no_dec)
  with pytest.raises(ValueError, match='no golden "decomposition"'):
    context_lib.Context(config_lib.resolve(bad))
  assert not (root / 'work').exists()


@pytest.mark.slow  # compiles dominate
def test_paper_config_runs_end_to_end_on_the_checkpoint(hf_run):
  c, _, _, root = hf_run
  m = experiment.run(c, str(root / 'work'))
  s = m['summary']
  for name in ('sft', 'outcome_only', 'pica', 'oracle'):
    assert math.isfinite(s[f'heldout_em_{name}']), name
  assert (root / 'work' / 'metrics.json').is_file()
