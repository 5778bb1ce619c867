"""Training: meshes and shardings, the TrainState, orbax checkpoints, `fit`.

Public API:
  make_mesh, shard_batch, replicate, batch_sharding, replicated,
    fsdp_sharding, num_batch_shards, maybe_initialize_distributed: meshes
    with ('data', 'fsdp') axes and the shardings used on them.
  TrainState, make_train_step: the checkpointable state and a standard
    gradient step for `fit`.
  Checkpointer: orbax CheckpointManager wrapper (save every N, resume).
  fit, fit_on_policy, NonFiniteError, TrainingInterrupted,
    train_state_sharding: the training loop, for supervised stages and for
    on-policy RL (rollout -> update); Ctrl-C stops it at a step boundary
    with a checkpoint.
  decode, make_evaluator, matches, starts_with (`lm_eval`): jit-able
    decoding from left-padded prompts and greedy exact-match / refusal
    evaluators over named prompt sets.
  allow_slow_cpu_collectives, fast_cpu_compile, use_compilation_cache
    (`xla_setup`): process-wide XLA settings, made before the backend
    starts.

`sft_world` (the SFT'd base model of the safety world that the NSPO and
CKU experiments start from) is not imported here; import it explicitly.

See common/train/README.md.
"""

from common.train.checkpoint import Checkpointer
from common.train.checkpoint import abstract_like
from common.train.lm_eval import decode
from common.train.lm_eval import final_eval
from common.train.lm_eval import make_evaluator
from common.train.lm_eval import matches
from common.train.lm_eval import starts_with
from common.train.loop import NonFiniteError
from common.train.loop import RolloutFn
from common.train.loop import TrainingInterrupted
from common.train.loop import fit
from common.train.loop import fit_on_policy
from common.train.loop import train_state_sharding
from common.train.mesh import BATCH_AXES
from common.train.mesh import DATA_AXIS
from common.train.mesh import FSDP_AXIS
from common.train.mesh import batch_sharding
from common.train.mesh import fsdp_sharding
from common.train.mesh import make_mesh
from common.train.mesh import maybe_initialize_distributed
from common.train.mesh import num_batch_shards
from common.train.mesh import replicate
from common.train.mesh import replicated
from common.train.mesh import shard_batch
from common.train.state import TrainState
from common.train.state import make_train_step
from common.train.xla_setup import allow_slow_cpu_collectives
from common.train.xla_setup import fast_cpu_compile
from common.train.xla_setup import use_compilation_cache

__all__ = [
  'BATCH_AXES',
  'DATA_AXIS',
  'FSDP_AXIS',
  'Checkpointer',
  'NonFiniteError',
  'TrainState',
  'TrainingInterrupted',
  'abstract_like',
  'allow_slow_cpu_collectives',
  'fast_cpu_compile',
  'use_compilation_cache',
  'batch_sharding',
  'decode',
  'RolloutFn',
  'fit',
  'fit_on_policy',
  'fsdp_sharding',
  'make_evaluator',
  'final_eval',
  'make_mesh',
  'make_train_step',
  'matches',
  'maybe_initialize_distributed',
  'num_batch_shards',
  'replicate',
  'replicated',
  'shard_batch',
  'starts_with',
  'train_state_sharding',
]
