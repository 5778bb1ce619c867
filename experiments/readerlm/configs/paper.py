"""ReaderLM paper settings (for accelerators; run at tiny sizes in a test).

Qwen2.5-1.5B-Instruct loaded from a Hugging Face directory, RoPE base 5e6,
the continued pre-training context schedule 32K -> 125K -> 256K (zig-zag
ring attention), then SFT (+ contrastive), merging of the four specialists,
DPO, and a self-play round; greedy decoding with repetition penalty 1.08.
"""

import ml_collections

from experiments.readerlm.configs import default


def get_config():
  c = default.get_config()
  c.name = 'paper'
  c.model = ml_collections.ConfigDict({
    'preset': 'qwen2.5-1.5b', 'hf_dir': 'Qwen2.5-1.5B-Instruct',
    'rope_theta': 5e6,
  })  # fmt: skip
  c.vocab_size = 151_936
  c.max_prompt_len = 32_768
  c.max_new_tokens = 8_192
  c.batch_size = 64
  c.world.update({'num_entities': 2500, 'num_distractors': 800})
  c.pages.update(
    {
      'sections': ('paragraph', 'list', 'table', 'code'),
      'max_facts': 6,
      'clutter_prob': 0.7,
    }
  )
  c.sft.update({'steps': 10_000, 'learning_rate': 1e-5, 'warmup_steps': 100})
  c.specialist.update(
    {'steps': 2_000, 'learning_rate': 1e-5, 'warmup_steps': 50}
  )
  c.dpo.update(
    {'steps': 2_000, 'learning_rate': 5e-7, 'warmup_steps': 50, 'beta': 0.1,
     'loss_type': 'sigmoid'}
  )  # fmt: skip
  c.self_play.update({'pages': 0, 'sft_steps': 2_000, 'dpo_steps': 2_000})
  c.eval_pages = 1000
  c.paper = ml_collections.ConfigDict({
    'context_schedule': (32_768, 125_000, 256_000),
    'rope_theta': 5e6,
    'max_position_embeddings': 512_768,
    'attention': 'zigzag_ring',
    'stage_order': ('continued_pretraining', 'sft', 'sft_contrastive',
                    'merge', 'dpo', 'self_play'),
    'specialists': ('md_filtered', 'md_critique', 'json_filtered',
                    'json_critique'),
    'teacher': 'Qwen2.5-32B-Instruct',
  })  # fmt: skip
  return c
