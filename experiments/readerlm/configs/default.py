"""ReaderLM default: 3 seeds, one-paragraph pages with clutter, a tiny model.

500-entity world (312 train pages, so the model cannot memorise names),
BPE vocabulary 2048 with one token per HTML tag, prompts up to 352 tokens
(none is cut), 600 SFT steps at lr 1e-2, length-normalised DPO, a
self-play round on 64 pages. Measured (2026-12-07, 8 CPU devices, one
job): 28 min wall. Drafter html_to_markdown ROUGE-L 0.372, refined 1.000;
tiny model SFT 0.506, + contrastive 0.480, merged 0.489, DPO 0.489,
self-play 0.489; trained - drafter +0.117 [+0.062, +0.156] (shown), DPO -
merged -0.001 [-0.006, +0.009] (readerlm/README.md).
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.name = 'default'
  c.seeds = (0, 1, 2)
  c.data_seed = 0
  c.world = ml_collections.ConfigDict({
    'num_entities': 500, 'num_distractors': 40, 'num_compositional_paths': 3,
    'train_questions': 60, 'test_questions': 20, 'compositional_questions': 10,
  })  # fmt: skip
  c.pages = ml_collections.ConfigDict(
    {
      'sections': ('paragraph',),
      'clutter_prob': 0.7,
      'max_facts': 2,
      'test_fraction': 0.2,
    }
  )
  c.drafter = 'html_to_markdown'
  c.vocab_size = 2048
  # one token per frequent HTML tag (common.tokenizers.bpe): prompts ~40%
  # shorter, so the page fits max_prompt_len
  c.split_html_tags = True
  c.max_prompt_len = 352  # every prompt whole (JSON ones up to 344)
  c.max_new_tokens = 64
  c.batch_size = 8
  c.model = ml_collections.ConfigDict({
    'preset': 'tiny', 'd_model': 64, 'n_layers': 2, 'n_heads': 4,
    'n_kv_heads': 2, 'd_ff': 128,
  })  # fmt: skip
  c.contrastive_weight = 1.0
  c.contrastive_margin = 0.5
  c.repetition_penalty = 1.08
  c.sft = ml_collections.ConfigDict(
    {'steps': 600, 'learning_rate': 1e-2, 'warmup_steps': 30}
  )
  c.specialist = ml_collections.ConfigDict(
    {'steps': 20, 'learning_rate': 3e-3, 'warmup_steps': 2}
  )
  c.merge_weights = (0.5, 0.5)
  c.dpo = ml_collections.ConfigDict(
    {'steps': 20, 'learning_rate': 3e-4, 'warmup_steps': 2, 'beta': 0.1,
     'loss_type': 'sigmoid_norm'}
  )  # fmt: skip
  # One self-play round: the DPO model drafts the train pages (0 = all).
  c.self_play = ml_collections.ConfigDict(
    {'pages': 64, 'sft_steps': 20, 'dpo_steps': 20}
  )
  # Ring size of the teacher-forced evaluation (0 = every device JAX sees).
  c.context_parallel = 0
  c.eval_pages = 16
  c.checkpoint_every = 50
  c.real = ml_collections.ConfigDict(
    {'nodejs_dir': '/usr/share/doc/nodejs/api', 'max_pages': 3}
  )
  c.paper = ml_collections.ConfigDict()
  return c
