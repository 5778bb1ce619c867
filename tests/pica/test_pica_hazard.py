"""Hazard model and CRM loss: hand-computed terms, placeholders, training."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from common import models
from pica import hazard


def _logit(h):
  return math.log(h / (1 - h))


def test_minimisers():
  # positives are minimised at h -> 0; negatives at h_z -> 1 (pre-z h -> 0)
  labels = jnp.array([[True, False]])
  valid = jnp.ones((1, 2), bool)
  good = hazard.crm_loss(jnp.array([[-8.0, 8.0]]), labels, valid)[0]
  bad = hazard.crm_loss(jnp.array([[8.0, -8.0]]), labels, valid)[0]
  assert good < 0.01 < bad
  lp = jnp.ones((1, 2), bool)
  pos = jnp.array([[-8.0, -8.0]])
  assert hazard.crm_loss(pos, lp, valid, mono_weight=0.0)[0] < 0.01
  # with the hinge the floor is the margin per consecutive pair
  np.testing.assert_allclose(
    hazard.crm_loss(pos, lp, valid)[0], 0.05, atol=2e-3
  )


def test_insert_placeholders():
  prompt = np.array([[0, 11, 12], [13, 14, 15]])
  pmask = prompt != 0
  tokens = np.array([[21, 22, 23, 24, 25, 0], [31, 32, 33, 0, 0, 0]])
  rmask = tokens != 0
  ends = np.array([[1, 3], [-1, -1]])
  out = hazard.insert_placeholders(prompt, pmask, tokens, rmask, ends, 99)
  assert out.tokens.shape == (2, 3 + 6 + 3)
  np.testing.assert_array_equal(
    out.tokens[0], [0, 11, 12, 21, 22, 99, 23, 24, 99, 25, 99, 0]
  )
  np.testing.assert_array_equal(out.positions[0], [5, 8, 10])
  np.testing.assert_array_equal(out.valid, [[1, 1, 1], [1, 0, 0]])
  np.testing.assert_array_equal(out.tokens[1, :7], [13, 14, 15, 31, 32, 33, 99])
  assert out.positions[1, 0] == 6
  np.testing.assert_array_equal(out.mask[0], out.tokens[0] != 0)
  with pytest.raises(ValueError, match='placeholder id 21'):
    hazard.insert_placeholders(prompt, pmask, tokens, rmask, ends, 21)
  rep = hazard.insert_placeholders(
    prompt, pmask, tokens, rmask, ends, 21, replace_id=3
  )
  np.testing.assert_array_equal(rep.tokens[0, 3:6], [3, 22, 21])
  with pytest.raises(ValueError, match='must increase'):
    hazard.insert_placeholders(
      prompt, pmask, tokens, rmask, np.array([[3, 1], [-1, -1]]), 99
    )


def test_hazard_model_causal_and_trainable():
  cfg = models.get_preset('tiny', vocab_size=32)
  model = hazard.HazardModel(
    models.Transformer(cfg, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1)
  )
  toks = jnp.array([[1, 5, 6, 30, 7, 8, 30], [1, 9, 6, 30, 7, 8, 30]])
  mask = jnp.ones_like(toks, bool)
  pos = jnp.array([[3, 6], [3, 6]])
  v = model.step_logits(toks, mask, pos)
  assert v.shape == (2, 2)
  # step 0 of both rows sees different prefixes; changing a token after a
  # placeholder does not change its value (causal)
  toks2 = toks.at[:, 4].set(11)
  np.testing.assert_allclose(
    model.step_logits(toks2, mask, pos)[:, 0], v[:, 0], atol=1e-6
  )
  # a few Adam steps fit row 0 as positive and row 1 as negative at z = 0
  batch = {
    'tokens': toks,
    'mask': mask,
    'positions': pos,
    'labels': jnp.array([[True, True], [False, False]]),
    'valid': jnp.ones((2, 2), bool),
  }
  graphdef, params = nnx.split(model)
  loss_fn = hazard.make_hazard_loss(graphdef)
  opt = optax.adam(1e-2)
  st = opt.init(params)

  @jax.jit
  def step(params, st):
    (loss, m), g = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
    u, st = opt.update(g, st, params)
    return optax.apply_updates(params, u), st, loss, m

  first = None
  for _ in range(30):
    params, st, loss, m = step(params, st)
    first = loss if first is None else first
  assert loss < 0.5 * first
  assert float(m['step_accuracy']) == 1.0


class CRMVariantsTest(chex.TestCase):
  """CRM terms and loss under jit and without (and pmap where vmapped)."""

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_crm_terms_positive_hand_computed(self):
    h = [0.2, 0.5, 0.9]
    v = jnp.array([[_logit(h[0]), _logit(h[1]), _logit(h[2])]])
    labels = jnp.array([[True, True, True]])
    valid = jnp.array([[True, True, False]])  # third step padding
    terms = self.variant(hazard.crm_terms)
    t = terms(v, labels, valid)
    chex.assert_tree_shape_prefix(t, (1,))
    assert not bool(t['negative'][0])
    np.testing.assert_allclose(
      t['survival'], [-(math.log(0.8) + math.log(0.5))], rtol=1e-6
    )
    # only the pair (0, 1): relu(0.5 - 0.2 + 0.05)
    np.testing.assert_allclose(t['mono_pos'], [0.35], rtol=1e-5)
    crm = self.variant(lambda *a: hazard.crm_loss(*a, mono_weight=2.0))
    loss, m = crm(v, labels, valid)
    chex.assert_shape(loss, ())
    np.testing.assert_allclose(
      loss, -(math.log(0.8) + math.log(0.5)) + 2 * 0.35, rtol=1e-5
    )
    # a falling hazard beyond the margin costs nothing
    v2 = jnp.array([[_logit(0.5), _logit(0.2)]])
    t2 = terms(v2, jnp.ones((1, 2), bool), jnp.ones((1, 2), bool))
    np.testing.assert_allclose(t2['mono_pos'], [0.0], atol=1e-7)

  @chex.variants(with_jit=True, without_jit=True)
  def test_crm_terms_negative_hand_computed(self):
    h = [0.2, 0.5, 0.4]
    v = jnp.array([[_logit(x) for x in h]])
    labels = jnp.array([[True, False, False]])
    valid = jnp.ones((1, 3), bool)
    t = self.variant(hazard.crm_terms)(v, labels, valid)
    assert bool(t['negative'][0]) and int(t['z'][0]) == 1
    s = 0.8 * 0.5 * 0.6
    np.testing.assert_allclose(t['failure'], [-math.log(1 - s)], rtol=1e-5)
    np.testing.assert_allclose(
      t['first_error'], [-(math.log(0.5) + math.log(0.8))], rtol=1e-5
    )
    # pairs at or after z = 1: (1, 2): relu(0.5 - 0.4 + 0.05); pair (0, 1)
    # before z does not count
    np.testing.assert_allclose(t['mono_neg'], [0.15], rtol=1e-5)
    crm = lambda *a: hazard.crm_loss(*a, neg_weight=0.5, mono_weight=1.0)
    loss, m = self.variant(crm)(v, labels, valid)
    want = 0.5 * (-math.log(1 - s) - math.log(0.5) - math.log(0.8) + 0.15)
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    # step accuracy: h0=0.2 on '+' right, h1=0.5 on '-' not > 0.5 -> 1/2
    np.testing.assert_allclose(m['step_accuracy'], 0.5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_failure_clamp_and_batch_mean(self):
    # h ~ 0 everywhere: 1 - S ~ 0 -> clamped at eps
    v = jnp.array([[-50.0, -50.0], [0.0, 0.0], [0.0, 0.0]])
    labels = jnp.array([[False, False], [True, True], [True, True]])
    valid = jnp.array([[True, True], [True, False], [False, False]])
    t = self.variant(hazard.crm_terms)(v, labels, valid)
    np.testing.assert_allclose(t['failure'][0], -math.log(1e-5), rtol=1e-5)
    chex.assert_tree_all_finite(t['first_error'])
    crm = self.variant(lambda *a: hazard.crm_loss(*a, mono_weight=0.0))
    loss, m = crm(v, labels, valid)
    # row 2 has no valid step and is excluded from the mean
    row0 = -math.log(1e-5) + 50.0  # L_W + L_z(-log h_0 = softplus(50))
    row1 = math.log(2.0)
    np.testing.assert_allclose(loss, (row0 + row1) / 2, rtol=1e-4)
    assert float(m['neg_fraction']) == 0.5

  @chex.variants(with_jit=True, without_jit=True)
  def test_crm_shape_errors(self):
    with self.assertRaisesRegex(AssertionError, r'\[Chex\].*same \[B, S\]'):
      self.variant(hazard.crm_terms)(
        jnp.zeros((2, 3)), jnp.ones((2, 2), bool), jnp.ones((2, 3), bool)
      )

  @chex.variants(with_jit=True, without_jit=True)
  def test_crm_terms_rejects_t_input(self):
    with self.assertRaisesRegex(ValueError, r'logits must be \[B, S\]'):
      self.variant(hazard.crm_terms)(
        jnp.zeros(3), jnp.ones(3, bool), jnp.ones(3, bool)
      )
