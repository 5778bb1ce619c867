"""PiCA paper: the released recipe (Qwen2.5, seven FlashRAG sets).

Hyperparameters from `novdream/PiCA` `Search-R1/train_ppo.sh` and
`OpenRLHF/examples/scripts/train_prm_mistral.sh` (research note §1.3,
§1.7). Documented for accelerators; `pica.experiment.run` does not yet
run file-based datasets with Hugging Face models (it raises, naming what
is missing): the library pieces it needs (`pica.data`, `common.retrieval`,
`common.models.load_hf`) exist.
"""

from experiments.pica.configs import default

DATASETS = (
  'nq',
  'triviaqa',
  'popqa',
  'hotpotqa',
  '2wikimultihopqa',
  'musique',
  'bamboogle',
)


def get_config():
  c = default.get_config()
  c.name = 'paper'
  c.hf_model_dir = 'path/to/Qwen2.5-3B-Instruct'  # or Qwen2.5-7B-Instruct
  c.data = {
    'corpus': 'path/to/wiki-18.jsonl',
    'train': 'path/to/train.jsonl',  # PiCA's RL set is unspecified
    'test': [f'path/to/{name}/test.jsonl' for name in DATASETS],
  }
  c.max_prompt_len = 8192
  c.rollout.update(
    {
      'max_turns': 5,
      'max_new_tokens': 800,
      'topk': 3,
      'max_info_tokens': 800,
      'temperature': 1.0,
    }
  )
  c.hazard.update(
    {
      'learning_rate': 5e-6,
      'batch_size': 256,
      'steps': 100_000 // 256,  # one epoch over max_samples 100k
      'neg_weight': 1.0,
      'mono_weight': 1.0,
      'margin': 0.05,
    }
  )
  c.rl.update(
    {
      'algorithm': 'ppo',
      'steps': 190,
      'prompts_per_step': 256,
      'num_generations': 5,
      'learning_rate': 7e-7,
      'critic_learning_rate': 7e-6,
      'epsilon': 0.2,
      'epsilon_high': 0.28,
      'beta': 0.001,
      'entropy_coef': 0.001,
      'cliprange_value': 0.5,
      'gamma': 1.0,
      'lam': 1.0,
    }
  )
  c.eval.update({'num_questions': 200, 'batch_size': 128})
  return c
