"""DHP: dynamic hybrid parallelism on jax.sharding sub-meshes.

Planner (NumPy): ``plan_round`` / ``plan_batch`` with a ``CostModel``;
baselines in ``dhp.baselines``; length generators in ``dhp.lengths``.
Runtime (JAX): ``common.parallel.ring_attention`` under ``jax.shard_map`` on
any ring size and ``DHPRuntime``, which runs a planned round on one sub-mesh
per group.
"""

from dhp import baselines
from dhp import lengths
from dhp.allocation import allocate_dp
from dhp.allocation import allocate_threshold
from dhp.cost_model import CostModel
from dhp.cost_model import calibrate
from dhp.cost_model import flexsp_preset
from dhp.cost_model import linear_preset
from dhp.model import ModelConfig
from dhp.packing import bfd_pack
from dhp.plan_types import BatchPlan
from dhp.plan_types import Grouping
from dhp.plan_types import GroupPlan
from dhp.plan_types import RoundPlan
from dhp.plan_types import RoundProblem
from dhp.plan_types import min_degrees
from dhp.planner import plan_batch
from dhp.planner import plan_round
from dhp.runtime import DHPRuntime
from dhp.runtime import ExecutableCache
from dhp.runtime import reference_loss_and_grads

__all__ = [
  'BatchPlan',
  'CostModel',
  'DHPRuntime',
  'ExecutableCache',
  'GroupPlan',
  'Grouping',
  'ModelConfig',
  'RoundPlan',
  'RoundProblem',
  'allocate_dp',
  'allocate_threshold',
  'baselines',
  'bfd_pack',
  'calibrate',
  'flexsp_preset',
  'lengths',
  'linear_preset',
  'min_degrees',
  'plan_batch',
  'plan_round',
  'reference_loss_and_grads',
]
