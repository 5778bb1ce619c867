"""Tests of the repetition penalty (CTRL / Hugging Face semantics)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common import models
from common import sampling


def test_penalty_on_hand_computed_logits():
  logits = jnp.array([[2.0, -1.0, 0.5, 3.0]])
  seen = jnp.array([[True, True, False, False]])
  out = np.asarray(sampling.repetition_penalty(logits, seen, 2.0))
  # seen positive 2 -> 1, seen negative -1 -> -2, unseen unchanged.
  np.testing.assert_allclose(out, [[1.0, -2.0, 0.5, 3.0]], rtol=1e-6)


def test_prompt_seen_ignores_padding():
  tokens = jnp.array([[0, 3, 3], [2, 1, 0]])
  mask = jnp.array([[False, True, True], [True, True, False]])
  seen = np.asarray(sampling.prompt_seen(tokens, mask, 4))
  np.testing.assert_array_equal(
    seen, [[False, False, False, True], [False, True, True, False]]
  )


def test_bad_penalty_is_refused():
  with pytest.raises(ValueError, match='repetition_penalty'):
    sampling.GenerationConfig(4, repetition_penalty=0.0)
  with pytest.raises(ValueError, match='repetition_penalty'):
    sampling.GenerationConfig(4, repetition_penalty=float('nan'))


def _model():
  cfg = models.get_preset('tiny', tie_embeddings=False, vocab_size=16)
  model = models.Transformer(cfg, rngs=nnx.Rngs(1))
  state = nnx.state(model, nnx.Param)
  nnx.update(model, jax.tree.map(lambda x: x * 8 if x.ndim == 2 else x, state))
  return model


def _reference(model, prompt, n, penalty):
  """Greedy decoding by full recompute with the HF penalty rule."""
  seq = list(prompt)
  for _ in range(n):
    logits = np.asarray(model(jnp.asarray([seq])).logits[0, -1], np.float64)
    for v in set(seq):
      logits[v] = logits[v] / penalty if logits[v] > 0 else logits[v] * penalty
    seq.append(int(np.argmax(logits)))
  return seq[len(prompt) :]


@pytest.mark.slow  # ~30-80 s on 2 cores: make test-all runs it
def test_sampler_matches_full_recompute_and_default_is_unchanged():
  model = _model()
  sampler = sampling.Sampler(model, capacity=24)
  prompt = [3, 5, 3, 7]
  tokens = jnp.asarray([prompt])
  off = sampling.GenerationConfig(8, temperature=0.0)
  on = sampling.GenerationConfig(8, temperature=0.0, repetition_penalty=3.0)
  got_off = np.asarray(
    sampler.sample(tokens, None, jax.random.key(0), off).tokens
  )
  got_on = np.asarray(
    sampler.sample(tokens, None, jax.random.key(0), on).tokens
  )
  assert got_off[0].tolist() == _reference(model, prompt, 8, 1.0)
  assert got_on[0].tolist() == _reference(model, prompt, 8, 3.0)
  # A strong penalty must change a greedy path that repeats tokens.
  assert len(set(got_on[0].tolist())) >= len(set(got_off[0].tolist()))
