"""Tests for common.optim.paths: path strings and regex masks."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from common import optim


class Block(nnx.Module):
  def __init__(self, rngs):
    self.layers = nnx.List(
      [nnx.Linear(2, 3, rngs=rngs), nnx.Linear(3, 2, rngs=rngs)]
    )
    self.norm = nnx.RMSNorm(2, rngs=rngs)
    self.embed = nnx.Embed(5, 2, rngs=rngs)


def _state():
  return nnx.split(Block(nnx.Rngs(0)), nnx.Param)[1]


def _flat_mask(mask):
  flat, _ = jax.tree_util.tree_flatten_with_path(mask)
  return {optim.path_str(p): v for p, v in flat}


def test_path_str_for_dicts_lists_and_nnx_state():
  tree = {'layers': [{'mlp': {'gate_proj': {'kernel': 1}}}], 'b': (2,)}
  assert optim.leaf_paths(tree) == ['b/0', 'layers/0/mlp/gate_proj/kernel']
  assert optim.leaf_paths(_state()) == [
    'embed/embedding',
    'layers/0/bias',
    'layers/0/kernel',
    'layers/1/bias',
    'layers/1/kernel',
    'norm/scale',
  ]


def test_path_mask_fullmatch_and_search():
  state = _state()
  mask = optim.path_mask(state, ['layers/0/.*', '.*scale'])
  assert jax.tree_util.tree_structure(mask) == jax.tree_util.tree_structure(
    state
  )
  assert _flat_mask(mask) == {
    'embed/embedding': False,
    'layers/0/bias': True,
    'layers/0/kernel': True,
    'layers/1/bias': False,
    'layers/1/kernel': False,
    'norm/scale': True,
  }
  # fullmatch: 'kernel' alone matches nothing; search finds it anywhere.
  with pytest.raises(ValueError, match=r"\['kernel'\] match no parameter"):
    optim.path_mask(state, 'kernel')
  searched = _flat_mask(optim.path_mask(state, 'kernel', match='search'))
  assert [p for p, v in searched.items() if v] == [
    'layers/0/kernel',
    'layers/1/kernel',
  ]


def test_path_mask_errors_name_pattern_and_paths():
  state = _state()
  with pytest.raises(ValueError, match='Available paths: embed/embedding'):
    optim.path_mask(state, ['layers/0/.*', 'encoder/.*'])
  with pytest.raises(ValueError, match=r"Invalid parameter pattern '\('"):
    optim.path_mask(state, '(')
  with pytest.raises(ValueError, match='allowed values: fullmatch, search'):
    optim.path_mask(state, '.*', match='prefix')
  mask = optim.path_mask(state, ['encoder/.*'], allow_unmatched=True)
  assert not any(jax.tree.leaves(mask))


def test_path_labels_and_default_decay_mask():
  state = _state()
  labels = _flat_mask(optim.path_labels(state, 'embed/.*', 'a', 'b'))
  assert labels['embed/embedding'] == 'a' and labels['norm/scale'] == 'b'
  decay = _flat_mask(optim.default_weight_decay_mask(state))
  assert [p for p, v in decay.items() if v] == [
    'layers/0/kernel',
    'layers/1/kernel',
  ]
  # Path rules alone exclude 2-D norm/embedding leaves.
  tree = {
    'wte': jnp.ones((4, 2)),
    'h': {'ln_1': {'g': jnp.ones((2, 2))}, 'mlp': {'w': jnp.ones((2, 2))}},
    'final_norm': {'w': jnp.ones((2, 2))},
  }
  decay = _flat_mask(optim.default_weight_decay_mask(tree))
  assert decay == {
    'final_norm/w': False,
    'h/ln_1/g': False,
    'h/mlp/w': True,
    'wte': False,
  }
