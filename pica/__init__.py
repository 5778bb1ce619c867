"""PiCA: pivot-based credit assignment for RL-trained search agents.

Modules (the retrievers are `common.retrieval`'s): `data` (Search-R1 /
FlashRAG files), `protocol` (tag parsing, format checks, retrieved-token
mask), `rollout` (batched multi-turn KV-cache agent loop), `pivots`
(pivot labels from golden decompositions), `hazard` (hazard reward model
and CRM loss), `rewards` (step and outcome token rewards), `ppo` (critic,
GAE, PPO update). The experiment: `experiment.run(config, workdir)` over
`config` (field checks) and `stages` (SFT, hazard, RL arms, evaluation on
the shared resumable loops of `common.train`).
"""

from pica import data
from pica import hazard
from pica import pivots
from pica import ppo
from pica import protocol
from pica import rewards
from pica import rollout
from pica.data import load_corpus
from pica.data import load_datasets
from pica.data import load_questions
from pica.hazard import HazardInputs
from pica.hazard import HazardModel
from pica.hazard import crm_loss
from pica.hazard import crm_terms
from pica.hazard import insert_placeholders
from pica.hazard import make_hazard_loss
from pica.pivots import PivotAnnotation
from pica.pivots import annotate
from pica.pivots import label_arrays
from pica.ppo import PPOConfig
from pica.ppo import ValueModel
from pica.ppo import compute_advantages
from pica.ppo import make_ppo_update
from pica.protocol import Action
from pica.protocol import ParsedTrajectory
from pica.protocol import Step
from pica.protocol import information_mask
from pica.protocol import parse_action
from pica.protocol import parse_trajectory
from pica.rewards import RewardConfig
from pica.rewards import outcome_scores
from pica.rewards import over_search_penalty
from pica.rewards import step_rewards
from pica.rewards import token_rewards
from pica.rollout import Rollout
from pica.rollout import RolloutConfig

__all__ = [
  'Action',
  'HazardInputs',
  'HazardModel',
  'ParsedTrajectory',
  'PPOConfig',
  'PivotAnnotation',
  'RewardConfig',
  'Rollout',
  'RolloutConfig',
  'Step',
  'ValueModel',
  'annotate',
  'compute_advantages',
  'crm_loss',
  'crm_terms',
  'data',
  'hazard',
  'information_mask',
  'insert_placeholders',
  'label_arrays',
  'load_corpus',
  'load_datasets',
  'load_questions',
  'make_hazard_loss',
  'make_ppo_update',
  'outcome_scores',
  'over_search_penalty',
  'parse_action',
  'parse_trajectory',
  'pivots',
  'ppo',
  'protocol',
  'rewards',
  'rollout',
  'step_rewards',
  'token_rewards',
]
