"""NSPO: null-space constrained policy optimisation as optax transforms.

Typical use::

  stats = nspo.init_stats({'mlp_in': (L, d_model), 'mlp_hidden': (L, d_ff)})
  for batch in general_batches:                 # jitted, streaming
    stats = nspo.accumulate(stats, captures, mask)
  spaces = nspo.estimate(stats, nspo.relative(5e-5))
  tx = optax.chain(optax.adamw(lr), nspo.project(spaces))
"""

from common.optim import resolve_targets
from nspo.covariance import CovarianceStats
from nspo.covariance import accumulate
from nspo.covariance import init_stats
from nspo.covariance import merge
from nspo.covariance import second_moments
from nspo.rules import RULES
from nspo.rules import Threshold
from nspo.rules import absolute
from nspo.rules import energy
from nspo.rules import min_ratio
from nspo.rules import relative
from nspo.spaces import REPRESENTATIONS
from nspo.spaces import ComplementProjector
from nspo.spaces import DenseProjector
from nspo.spaces import NullBasisProjector
from nspo.spaces import estimate
from nspo.spaces import from_moments
from nspo.spaces import load as load_spaces
from nspo.spaces import save as save_spaces
from nspo.spaces import to_dense
from nspo.targets import ATTENTION_TARGETS
from nspo.targets import MLP_TARGETS
from nspo.transforms import ProjectionState
from nspo.transforms import ReprojectState
from nspo.transforms import project
from nspo.transforms import reproject_every

__all__ = [
  'ATTENTION_TARGETS',
  'MLP_TARGETS',
  'REPRESENTATIONS',
  'RULES',
  'ComplementProjector',
  'CovarianceStats',
  'DenseProjector',
  'NullBasisProjector',
  'ProjectionState',
  'ReprojectState',
  'Threshold',
  'absolute',
  'accumulate',
  'energy',
  'estimate',
  'from_moments',
  'init_stats',
  'load_spaces',
  'merge',
  'min_ratio',
  'project',
  'relative',
  'reproject_every',
  'resolve_targets',
  'save_spaces',
  'second_moments',
  'to_dense',
]
