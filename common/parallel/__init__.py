"""Context parallelism: causal zig-zag ring attention on a mesh axis.

``ring_attention.ring_attention`` runs inside ``jax.shard_map`` on any ring
size; ``zigzag_layout`` orders packed sequences on the host so that every
device has the same causal work; ``dense_attention`` is the single-device
reference with the same masks. Used by ``dhp`` (per-group sub-meshes) and
``readerlm`` (long pages through the ring).
"""

from common.parallel import ring_attention
from common.parallel.ring_attention import ZigzagLayout
from common.parallel.ring_attention import dense_attention
from common.parallel.ring_attention import padded_length
from common.parallel.ring_attention import zigzag_layout

__all__ = [
  'ZigzagLayout',
  'dense_attention',
  'padded_length',
  'ring_attention',
  'zigzag_layout',
]
