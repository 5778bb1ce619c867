"""CKU: constrained knowledge unlearning.

Score MLP neurons on retain data, lock the most important `lock_rate`
fraction per selected layer, and unlearn the forget data (gradient ascent
or NPO, plus a retain term) with the locked neurons' updates zeroed::

  stats = cku.init_scores(L, d_ff)
  for batch in retain_batches:   # a: mlp_hidden [L,B,T,F], g: dL/da
    stats = cku.accumulate_scores(stats, a, g, mask)
  locked = cku.select(cku.mean_scores(stats), lock_rate=0.8, layers=[2, 3])
  tx = optax.chain(optax.adamw(lr), cku.mask(locked))
"""

from cku.losses import FORGET_LOSSES
from cku.losses import gradient_ascent_loss
from cku.losses import kl_from_logits
from cku.losses import nll
from cku.losses import npo_loss
from cku.losses import unlearning_loss
from cku.masking import NeuronMaskState
from cku.masking import mask
from cku.neurons import NEURON_TARGETS
from cku.neurons import depth_scaled_layers
from cku.neurons import select
from cku.scoring import SCORES
from cku.scoring import ScoreStats
from cku.scoring import accumulate_scores
from cku.scoring import init_scores
from cku.scoring import mean_scores
from cku.scoring import token_scores
from cku.scoring import weight_saliency

__all__ = [
  'FORGET_LOSSES',
  'NEURON_TARGETS',
  'SCORES',
  'NeuronMaskState',
  'ScoreStats',
  'accumulate_scores',
  'depth_scaled_layers',
  'gradient_ascent_loss',
  'init_scores',
  'kl_from_logits',
  'mask',
  'mean_scores',
  'nll',
  'npo_loss',
  'select',
  'token_scores',
  'unlearning_loss',
  'weight_saliency',
]
