"""TPAW at the paper's settings (for accelerators; constructed in a test).

The paper (ACL 2026): Qwen2.5-1.5B or Llama-3.1-8B SFT'd on
UltraChat-200k, then self-play on a 50k subset for up to 4 iterations,
team of the last N_max = 3 checkpoints, opponent data of the last 3
iterations, eta = 6, gamma = 0.5; lambda is not stated (SPIN's 0.1).
Set `model.hf_dir` to the Hugging Face directory of the SFT model and
`data.path` / `data.eval_path` to UltraChat chat-format JSONL files
(`{"messages": [...]}` per line). Steps: 50k triplets x 3 iterations of
data x 2 epochs / batch 64 (SPIN's). The checkpoint's own tokenizer
encodes the data and its chat template renders the prompts
(`tpaw.experiment.Task`); `tests/tpaw/test_tpaw_hf_paper.py` runs this
config, sizes overridden, on a tiny Qwen2 written by `transformers`.
"""

from experiments.tpaw.configs import default


def get_config():
  c = default.get_config()
  c.name = 'paper'
  c.data.update(
    {
      'source': 'chat_jsonl',
      'path': 'data/ultrachat_50k_train.jsonl',
      'eval_path': 'data/ultrachat_test.jsonl',
      'prompt_len': 1024,
      'response_len': 1024,
      'num_train': 50_000,
      'num_eval': 1000,
    }
  )
  c.model = c.model.__class__(
    {'preset': 'qwen2.5-1.5b', 'hf_dir': 'models/Qwen2.5-1.5B-SFT'}
  )
  c.sft.update({'steps': 0, 'batch_size': 64, 'learning_rate': 2e-5})
  c.selfplay.update(
    {
      'iterations': 4,
      'steps_per_iteration': 4700,
      'batch_size': 64,
      'learning_rate': 5e-7,
      'lam': 0.1,
      'eta': 6.0,
      'gamma': 0.5,
      'n_max': 3,
      'opponent_window': 3,
      'spin_opponent_window': 2,
      'temperature': 1.0,
      'logprob_batch_size': 64,
      'checkpoint_every': 500,
      'log_every': 50,
    }
  )
  c.eval.batch_size = 64
  return c
