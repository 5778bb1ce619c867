"""ReaderLM long: the default recipe where the model can read the page.

Two changes from `default`: prompts of up to 512 tokens, so the main
content is never cut (at 256, 81% of the Markdown prompts lose their
middle, which is where the main content sits), and 900 SFT steps instead of
300, so the tiny model learns to copy names from the page. About 25 min on
2 cores (3 seeds), over the main job's few-minute budget, so `make demo`
runs `default`; readerlm/README.md gives both.

  python -m experiments.readerlm.main --workdir=runs/readerlm_long \
    --config=experiments/readerlm/configs/long.py
"""

from experiments.readerlm.configs import default


def get_config():
  c = default.get_config()
  c.name = 'long'
  c.max_prompt_len = 512
  c.sft.steps = 900
  return c
