"""TPAW: team-based self-play with dual adaptive weighting (ACL 2026).

SPIN-style self-play: the policy learns to prefer the SFT target `y` over
its own earlier samples `y'`, judged by a team of its last checkpoints,
with target-response reweighting (TRW, `eta`) and main-player weighting
(MPW, `gamma`). See README.md for the formulas and deviations.

* `tpaw_losses`, `target_weights`, `player_weights`, `diagnostics`: the
  loss as pure array functions (`tpaw.loss`).
* `team_logprobs`, `TeamStore`, `team_iterations`: the frozen team, its
  orbax store and its precomputed log-probs (`tpaw.team`).
* `run_selfplay`, `SelfPlayConfig`: the iteration driver on
  `common.train.fit_on_policy` (`tpaw.selfplay`); `run_selfplay_lanes`
  runs several (seeds x arms) stacked in one compiled step (`tpaw.lanes`).
* `read_chat_jsonl`, `read_prompt_completion_jsonl`, `encode_pairs`: data
  (`tpaw.data`).
"""

from tpaw.data import DataFormatError
from tpaw.data import PairData
from tpaw.data import SFTRecord
from tpaw.data import encode_pairs
from tpaw.data import read_chat_jsonl
from tpaw.data import read_prompt_completion_jsonl
from tpaw.data import read_sft
from tpaw.data import render_messages
from tpaw.data import sequence_batch
from tpaw.loss import check_hyperparameters
from tpaw.loss import diagnostics
from tpaw.loss import implicit_rewards
from tpaw.loss import player_weights
from tpaw.loss import target_weights
from tpaw.loss import tpaw_losses
from tpaw.loss import uniform_weights
from tpaw.selfplay import Lane
from tpaw.selfplay import NonFiniteIterationError
from tpaw.selfplay import SelfPlayConfig
from tpaw.selfplay import SelfPlayResult
from tpaw.selfplay import make_loss
from tpaw.selfplay import make_step
from tpaw.selfplay import per_iteration
from tpaw.selfplay import run_selfplay
from tpaw.selfplay import run_selfplay_lanes
from tpaw.team import TeamStore
from tpaw.team import opponent_iterations
from tpaw.team import team_iterations
from tpaw.team import team_logprobs

__all__ = [
  'DataFormatError',
  'Lane',
  'NonFiniteIterationError',
  'PairData',
  'SFTRecord',
  'SelfPlayConfig',
  'SelfPlayResult',
  'TeamStore',
  'check_hyperparameters',
  'diagnostics',
  'encode_pairs',
  'implicit_rewards',
  'make_loss',
  'make_step',
  'opponent_iterations',
  'per_iteration',
  'player_weights',
  'read_chat_jsonl',
  'read_prompt_completion_jsonl',
  'read_sft',
  'render_messages',
  'run_selfplay',
  'run_selfplay_lanes',
  'sequence_batch',
  'target_weights',
  'team_iterations',
  'team_logprobs',
  'tpaw_losses',
  'uniform_weights',
]
