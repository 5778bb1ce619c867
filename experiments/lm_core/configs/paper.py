"""lm_core at paper scale: the same recipe on a Qwen2.5-0.5B-shaped model.

For accelerators. The architecture is the real Qwen2.5-0.5B shape
(`common.models` preset); weights are trained from scratch here since the
world has its own vocabulary (load a Hugging Face directory with
`common.models.load_hf` to start from pretrained weights instead).
"""

from experiments.lm_core.configs import default


def get_config():
  c = default.get_config()
  c.name = 'paper'
  c.world.update(
    {
      'num_entities': 2500,  # the most the name pools give
      'num_distractors': 5000,
      'train_questions': 50000,
      'test_questions': 2000,
    }
  )
  c.top_k_docs = 5
  c.max_prompt_len = 192
  c.model = c.model.__class__({'preset': 'qwen2.5-0.5b', 'max_seq_len': 256})
  c.sft.update(
    {
      'steps': 2000,
      'batch_size': 128,
      'learning_rate': 1e-4,
      'num_demonstrations': 5000,  # scarce labels, as in default
    }
  )
  c.grpo.update(
    {
      'steps': 1000,
      'prompts_per_step': 64,
      'num_generations': 8,
      'learning_rate': 1e-6,
      'beta': 0.04,
    }
  )
  c.eval.num_questions = 2000
  return c
