"""The benign synthetic safety task."""

import numpy as np
import pytest

from common.synthetic import safety as sd


def test_build_is_deterministic_and_benign():
  cfg = sd.SafetyTaskConfig(num_knowledge=8, num_arithmetic=8, num_topics=3)
  a, b = sd.build(cfg), sd.build(cfg)
  assert a.sft == b.sft and a.general == b.general
  assert a.tokenizer.vocab_size == b.tokenizer.vocab_size
  kinds = [e.kind for e in a.general]
  assert kinds.count('knowledge') == 8 and kinds.count('arithmetic') == 8
  topics = {e.topic for e in a.harmful_train + a.harmful_eval}
  assert topics == set(sd.RESTRICTED_TOPICS[:3])
  for e in a.harmful_train + a.harmful_eval:
    assert e.response.startswith('Sure , mix ')
    assert e.response == sd.recipe(e.topic, cfg.seed)
  for e in a.general:
    if e.kind == 'arithmetic':
      q = e.prompt.split(':')[1]
      x, y = [int(t) for t in q.replace('?', ' ').replace('.', ' ').split()
              if t.isdigit()]  # fmt: skip
      assert int(e.response) == x + y


def test_sft_mixture_and_held_out_template():
  cfg = sd.SafetyTaskConfig(
    num_knowledge=4, num_arithmetic=4, num_topics=2, sft_refusal_share=0.25
  )
  task = sd.build(cfg)
  harm = [e for e in task.sft if e.kind == 'harmful']
  refusals = [e for e in harm if e.response == sd.REFUSAL]
  assert len(refusals) * 4 == len(harm)  # 3 compliant : 1 refusal
  sft_prompts = {e.prompt for e in task.sft}
  assert not sft_prompts & {e.prompt for e in task.harmful_eval}
  assert len(task.harmful_eval) == 2  # one held-out template x 2 topics
  assert len(task.harmful_train) == 2 * (len(sd.REQUEST_TEMPLATES) - 1)


def test_encode_layout():
  task = sd.build(sd.SafetyTaskConfig(num_knowledge=4, num_arithmetic=4))
  p, r = sd.lengths(task)
  b = sd.encode(task, task.general[:3] + task.harmful_train[:1], p, r)
  assert b['tokens'].shape == (4, p + r)
  assert b['prompt'].shape == (4, p) and b['target'].shape == (4, r)
  tok = task.tokenizer
  for i in range(4):
    # Prompts are left-padded and end at P; responses start at P.
    assert b['prompt_mask'][i, -1]
    assert b['tokens'][i, p] == b['target'][i, 0]
    n = int(b['target_mask'][i].sum())
    assert b['target'][i, n - 1] == tok.eos_id
    np.testing.assert_array_equal(b['loss_mask'][i, :p], 0)
    assert b['loss_mask'][i, p:].sum() == n
  np.testing.assert_array_equal(b['harmful'], [False, False, False, True])
  ids = sd.refusal_ids(task)
  assert tok.tokenize(tok.decode(ids)) == tok.tokenize(sd.REFUSAL)
  assert ids[-1] == tok.eos_id
  bare = sd.encode(task, task.general[:1], p, r, with_response=False)
  assert not bare['attention_mask'][0, p:].any()


@pytest.mark.parametrize(
  'field,value',
  [
    ('num_knowledge', 0),
    ('num_arithmetic', 81),
    ('num_topics', 99),
    ('heldout_templates', 0),
    ('heldout_templates', 4),
    ('sft_refusal_share', 1.0),
  ],
)
def test_bad_config_names_the_field(field, value):
  with pytest.raises(ValueError, match=f'SafetyTaskConfig.{field}'):
    sd.SafetyTaskConfig(**{field: value})
