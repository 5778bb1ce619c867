"""E3-TIR: enhanced experience exploitation for tool-integrated reasoning.

A warm-up for tool-using agents (Guo et al., ACL 2026 Findings) that
replaces "SFT on many expert trajectories, then RL": each prompt's group
mixes self-exploration rollouts, the expert trajectory, and on-policy
branches grown from high-entropy anchors along it, optimised with a hybrid
advantage and Advantage-Aware Gradient Detaching; then ordinary RL.

Pure array functions (shapes in their docstrings): `anchors`,
`advantages.hybrid_advantages`, `aagd.aagd_mask`, `loss.mixed_policy_loss`
(with the off-policy prefix ratio), `filtering`, `roi`. The tool
environment (`tools`) and branch growth (`branching`) run on the shared
tool loop `common.sampling.multiturn` and the KV-cache fork
`common.sampling.fork`. `data` reads and writes Tool-Star JSONL/parquet.
"""

from e3tir import aagd
from e3tir import advantages
from e3tir import anchors
from e3tir import branching
from e3tir import data
from e3tir import filtering
from e3tir import loss
from e3tir import roi
from e3tir import tools
from e3tir import trajectory
from e3tir.aagd import aagd_mask
from e3tir.aagd import observation_mask
from e3tir.advantages import hybrid_advantages
from e3tir.advantages import segment_normalize
from e3tir.anchors import sampled_anchors
from e3tir.anchors import select_anchors
from e3tir.anchors import topk_anchors
from e3tir.filtering import best_expert_gate
from e3tir.filtering import relative_keep
from e3tir.filtering import variance_keep
from e3tir.loss import MixedLossConfig
from e3tir.loss import make_mixed_loss
from e3tir.loss import mixed_policy_loss
from e3tir.loss import prefix_ratio
from e3tir.roi import relative_roi
from e3tir.tools import ToolIntegratedEnvironment

__all__ = [
  'MixedLossConfig',
  'ToolIntegratedEnvironment',
  'aagd',
  'aagd_mask',
  'advantages',
  'anchors',
  'best_expert_gate',
  'branching',
  'data',
  'filtering',
  'hybrid_advantages',
  'loss',
  'make_mixed_loss',
  'mixed_policy_loss',
  'observation_mask',
  'prefix_ratio',
  'relative_keep',
  'relative_roi',
  'roi',
  'sampled_anchors',
  'segment_normalize',
  'select_anchors',
  'tools',
  'topk_anchors',
  'trajectory',
  'variance_keep',
]
