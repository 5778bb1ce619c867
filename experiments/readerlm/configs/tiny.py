"""ReaderLM tiny: a smoke test (seconds), one seed."""

from experiments.readerlm.configs import default


def get_config():
  c = default.get_config()
  c.name = 'tiny'
  c.seeds = (0,)
  c.world.update({'num_entities': 40})
  c.pages.update(
    {'sections': ('paragraph',), 'max_facts': 2, 'clutter_prob': 0.3}
  )
  c.vocab_size = 512
  c.max_prompt_len = 320
  c.max_new_tokens = 48
  c.model.update({'d_model': 32, 'n_layers': 1, 'd_ff': 64})
  c.sft.update({'steps': 6, 'warmup_steps': 1})
  c.specialist.update({'steps': 2, 'warmup_steps': 0})
  c.dpo.update({'steps': 2, 'warmup_steps': 0})
  c.self_play.update({'pages': 8, 'sft_steps': 2, 'dpo_steps': 2})
  c.eval_pages = 8
  c.checkpoint_every = 4
  c.real.max_pages = 1
  return c
