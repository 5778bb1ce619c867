"""PiCA paper: the released recipe (Qwen2.5, seven FlashRAG sets).

Hyperparameters from `novdream/PiCA` `Search-R1/train_ppo.sh` and
`OpenRLHF/examples/scripts/train_prm_mistral.sh` (research note §1.3,
§1.7). Runs through the same `pica.experiment.run` as `default`: the
policy is the Hugging Face checkpoint in `hf_model_dir` (its weights, its
BPE tokenizer and its chat template around the Search-R1 instruction
prompt), the questions and corpus are Search-R1 / FlashRAG JSONL files
(`pica.data`: the train file needs golden decompositions, which the pivot
labels come from), the hazard is read at Qwen2.5's unused
`<|vision_start|>` token as in the released code, and there is no SFT
stage (PiCA starts RL from the instruct model). Point it at your files:

  python -m experiments.pica.main --config=experiments/pica/configs/paper.py \
    --config.hf_model_dir=/models/Qwen2.5-3B-Instruct \
    --config.data.corpus=/data/wiki-18.jsonl \
    --config.data.train=/data/musique_train.jsonl \
    --config.data.test='("/data/nq/test.jsonl", "/data/hotpotqa/test.jsonl")'
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
  c.prompt_instruction = True
  c.sft.steps = 0
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
      'placeholder': '<|vision_start|>',
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
