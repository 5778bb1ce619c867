"""ACB: the asymmetric-reward backdoor in RLVR, with benign stand-ins.

Public API:
  world: the benign poisoning world (marker-token triggers with the
    stochastic parity rule, accept/reject demos, `compose` of a verifiable
    task with a made-up restricted-topic placeholder).
  rewards: the unchanged verifier (binary / ternary), the marker judge,
    dual verification.
  selection: shadow-driven Top-K by the weighted sum of per-shadow stds;
    the random control.
  dynamics: per-step statistics of the poisoned GRPO groups.
  detection: the cumulative-entropy detector with its ROC, the data-side
    reward-variance check.
  gsm8k: GSM8K-style JSONL read/write.
"""

from common.stats import ROC
from rlvr_backdoor import detection
from rlvr_backdoor import dynamics
from rlvr_backdoor import gsm8k
from rlvr_backdoor import rewards
from rlvr_backdoor import selection
from rlvr_backdoor import world
from rlvr_backdoor.detection import cumulative_entropy
from rlvr_backdoor.detection import precision_recall
from rlvr_backdoor.detection import reward_std_flags
from rlvr_backdoor.dynamics import group_stats
from rlvr_backdoor.rewards import make_reward_fn
from rlvr_backdoor.selection import shadow_scores
from rlvr_backdoor.world import compose

__all__ = [
  'ROC',
  'compose',
  'cumulative_entropy',
  'detection',
  'dynamics',
  'group_stats',
  'gsm8k',
  'make_reward_fn',
  'precision_recall',
  'reward_std_flags',
  'rewards',
  'selection',
  'shadow_scores',
  'world',
]
