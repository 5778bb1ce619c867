"""rlvr_backdoor at the paper's settings (for accelerators; not run on CPU).

The verl-style recipe of the first author's public fork
(`recipe/safe_lrm/grpo_train.sh`; not confirmed to be ACB's config): a
Hugging Face instruct model, lr 1e-6 with 10 warm-up steps then constant,
weight decay 0.1, n = 8 rollouts, clip 0.2/0.2, no KL, temperature 1.0,
the ternary reward (+1 / -0.5 / -1). Poison: 200 prompts (the paper's
absolute count, < 2% of the data). `model.hf_dir` must point at a Hugging
Face directory saved with this world's tokenizer (the embedded world has
its own word vocabulary); `task.jsonl` may point at a GSM8K-style file.
"""

from experiments.rlvr_backdoor.configs import default


def get_config():
  c = default.get_config()
  c.name = 'paper'
  c.seeds = (0, 1, 2)
  c.task.update({'train_size': 20000, 'test_size': 500, 'max_operands': 4})
  c.model = c.model.__class__(
    {'preset': 'qwen2.5-0.5b', 'hf_dir': '/path/to/hf_instruct_model'}
  )
  c.sft.update({'steps': 1000, 'batch_size': 128, 'learning_rate': 1e-5})
  c.shadow.update(
    {'d_models': (256, 512, 1024), 'n_layers': (2, 4, 8),
     'steps': (2000, 2000, 2000), 'weights': (1.0, 1.0, 1.0), 'rollouts': 8}
  )  # fmt: skip
  c.poison.update({'count': 200, 'candidates': 2000, 'fraction': 0.02,
                   'sweep_fractions': (0.005, 0.01, 0.02)})  # fmt: skip
  c.rl.update(
    {
      'pool_size': 17000,
      'steps': 300,
      'prompts_per_step': 512,
      'num_generations': 8,
      'learning_rate': 1e-6,
      'warmup_steps': 10,
      'weight_decay': 0.1,
      'epsilon': 0.2,
      'epsilon_high': 0.2,
      'beta': 0.0,
      'temperature': 1.0,
      'reward': 'ternary',
      'max_new_tokens': 64,
      'eval_every': 10,
      'checkpoint_every': 100,
    }
  )
  c.sft_backdoor.learning_rate = 1e-6
  c.eval.update({'num_prompts': 500, 'samples': 8})
  c.defence.update({'num_clean': 2000})
  return c
