"""`resolve_targets`: {pattern: value} over parameter paths."""

import jax.numpy as jnp
import pytest
from flax import nnx

from common import models
from common import optim


def _tree():
  k = jnp.zeros((2, 2))
  return {
    'layers': {
      '0': {'mlp': {'gate': {'kernel': k}, 'down': {'kernel': k}}},
      '1': {'mlp': {'gate': {'kernel': k}, 'down': {'kernel': k}}},
    },
    'head': {'kernel': k},
  }


def test_layer_group_values_and_search_semantics():
  found = optim.resolve_targets(
    _tree(),
    {
      r'layers/(?P<layer>\d+)/mlp/gate/kernel$': 'in',
      r'mlp/down/kernel$': 'hidden',  # no layer group: stacked / all
    },
  )
  assert found == {
    'layers/0/mlp/gate/kernel': optim.LeafTarget('in', 0),
    'layers/1/mlp/gate/kernel': optim.LeafTarget('in', 1),
    'layers/0/mlp/down/kernel': optim.LeafTarget('hidden', None),
    'layers/1/mlp/down/kernel': optim.LeafTarget('hidden', None),
  }
  # fullmatch needs the whole path.
  with pytest.raises(ValueError, match=r"\['mlp/down/kernel\$'\] match no"):
    optim.resolve_targets(_tree(), {r'mlp/down/kernel$': 0}, match='fullmatch')


def test_errors_name_the_pattern_or_leaf():
  with pytest.raises(ValueError, match='targets is empty'):
    optim.resolve_targets(_tree(), {})
  with pytest.raises(ValueError, match='two target patterns'):
    optim.resolve_targets(_tree(), {'head': 0, 'kernel': 1})
  with pytest.raises(ValueError, match='not a|Invalid parameter pattern'):
    optim.resolve_targets(_tree(), {'(': 0})
  with pytest.raises(ValueError, match='Unknown match'):
    optim.resolve_targets(_tree(), {'head': 0}, match='prefix')


def test_nnx_state_paths_drop_the_variable_value():
  cfg = models.get_preset(
    'tiny', vocab_size=20, d_model=16, n_layers=2, d_ff=32, max_seq_len=8
  )
  _, params = models.split(models.Transformer(cfg, rngs=nnx.Rngs(0)))
  found = optim.resolve_targets(
    params, {r'layers/(?P<layer>\d+)/mlp/down_proj/kernel$': 'mlp_hidden'}
  )
  assert found == {
    f'layers/{i}/mlp/down_proj/kernel': optim.LeafTarget('mlp_hidden', i)
    for i in range(2)
  }
