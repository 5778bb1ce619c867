"""Greedy decoding judges and the evaluator over named sets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common import models
from common import train


def test_starts_with_and_matches_hand_cases():
  toks = jnp.array([[5, 6, 2, 0], [5, 7, 2, 0], [6, 2, 0, 0]])
  np.testing.assert_array_equal(
    train.starts_with(toks, jnp.array([5, 6, 2])), [True, False, False]
  )
  assert not np.any(train.starts_with(toks, jnp.arange(5)))
  target = jnp.array([[5, 6, 2], [5, 6, 2], [6, 2, 0]])
  tmask = jnp.array([[1, 1, 1], [1, 1, 1], [1, 1, 0]], bool)
  np.testing.assert_array_equal(
    train.matches(toks, target, tmask), [True, False, True]
  )
  # A reference longer than the generation budget never matches.
  np.testing.assert_array_equal(
    train.matches(toks[:, :2], target, tmask), [False, False, True]
  )


def test_evaluator_scores_its_own_greedy_output_as_exact():
  cfg = models.get_preset(
    'tiny', vocab_size=20, d_model=16, n_layers=1, d_ff=32, max_seq_len=16
  )
  graphdef, params = models.split(models.Transformer(cfg, rngs=nnx.Rngs(0)))
  rng = np.random.default_rng(0)
  prompt = rng.integers(3, 20, (4, 3)).astype(np.int32)
  pmask = np.ones((4, 3), bool)
  pmask[0, 0] = False
  key = jax.random.key(0)
  out = train.decode(graphdef, params, prompt, pmask, key, 4, 0.0, 2)
  # The greedy output itself as the reference (with everything after the
  # first EOS masked) matches; a perturbed first token does not.
  gen, gmask = np.asarray(out.tokens), np.asarray(out.mask)
  other = gen.copy()
  other[:, 0] = (other[:, 0] + 1) % 20
  sets = {
    'same': {'prompt': prompt, 'prompt_mask': pmask, 'target': gen,
             'target_mask': gmask},
    'other': {'prompt': prompt, 'prompt_mask': pmask, 'target': other,
              'target_mask': gmask},
  }  # fmt: skip
  refusal = gen[0, :2]
  ev = train.make_evaluator(graphdef, sets, refusal, eos_id=2, max_new_tokens=4)
  res = ev(params)
  assert res['same/accuracy'] == 1.0 and res['other/accuracy'] == 0.0
  want = float(np.mean(np.all(gen[:, :2] == refusal, axis=1)))
  assert res['same/refusal'] == want >= 0.25
  with pytest.raises(ValueError, match="lacks \\['prompt_mask'"):
    train.make_evaluator(graphdef, {'x': {'prompt': prompt}}, refusal, 2, 4)
