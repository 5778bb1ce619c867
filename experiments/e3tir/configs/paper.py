"""e3tir at the paper's settings (for accelerators; not run on CPU).

Qwen2.5-3B-Instruct from a Hugging Face directory (`model.hf_dir`, saved
with this world's tokenizer: the embedded worlds have their own word
vocabulary; or a Tool-Star file in `task.data_file`). The Tool-Star RL
stack's hyperparameters (`shared/research/rl_family_code.md` §3.2.4): lr
1e-6, 8 rollouts per prompt, clip 0.2, entropy 0.001, no KL, temperature
1.0, at most 3 tool calls, -1 format penalty; SFT baseline lr 7e-6. The
E3-TIR warm-up budget: < 10% of the SFT set (the paper: 2k-4k of 54k). The
anchor count, branch factor and mix weight are not public [recon].
"""

from experiments.e3tir.configs import default


def get_config():
  c = default.get_config()
  c.name = 'paper'
  c.arms = ('zero_rl', 'sft_rl', 'sft_rl_matched', 'e3tir', 'e3tir_no_branch',
            'e3tir_no_aagd', 'e3tir_no_hybrid')  # fmt: skip
  c.task.update({'num_entities': 2000, 'num_distractors': 2000,
                 'qa_train': 5000, 'qa_test': 200, 'math_train': 5000,
                 'math_test': 500, 'min_operands': 2, 'max_operands': 4,
                 'min_digits': 1, 'max_digits': 3, 'ops': ('+', '-', '*', '/'),
                 'topk': 3})  # fmt: skip
  c.model = c.model.__class__(
    {'preset': 'qwen2.5-3b', 'hf_dir': '/path/to/Qwen2.5-3B-Instruct'}
  )
  c.base.update({'steps': 1, 'batch_size': 1, 'learning_rate': 1e-6})
  c.rollout.update({'max_calls': 3, 'max_new_tokens': 512,
                    'max_obs_tokens': 512, 'temperature': 1.0})  # fmt: skip
  c.reward.update({'kind': 'f1', 'format_penalty': -1.0})
  c.budget.update({'expert_fraction': 0.07, 'warmup_steps': 200,
                   'rl_steps': 300})  # fmt: skip
  c.sft.update({'batch_size': 64, 'learning_rate': 7e-6})
  c.rl.update({'prompts_per_step': 128, 'num_generations': 8,
               'learning_rate': 1e-6, 'epsilon': 0.2,
               'entropy_coef': 0.001})  # fmt: skip
  c.e3tir.update({'prompts_per_step': 128, 'num_self': 4, 'num_anchors': 2,
                  'branches_per_anchor': 2, 'learning_rate': 1e-6})  # fmt: skip
  c.eval.update({'num_math': 500, 'num_qa': 200, 'every': 50})
  return c
