"""Property tests: padding invariance and normalisation identities."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from common import rl
from tests import tolerances as tol

B, T, PAD = 4, 5, 3
floats = st.floats(-10.0, 10.0, allow_nan=False, width=32)
row_lengths = hnp.arrays(np.int32, (B,), elements=st.integers(0, T))
PROPERTY = settings(max_examples=25, deadline=None)


def _mask(lengths, width):
  return (np.arange(width)[None] < np.asarray(lengths)[:, None]).astype(
    np.float32
  )


def _pad(x, value):
  return np.concatenate([x, np.full((x.shape[0], PAD), value, x.dtype)], 1)


@jax.jit
def _gae(r, v, m):
  return rl.gae_advantages(r, v, m, gamma=0.9, lam=0.7)[0]


@PROPERTY
@given(
  hnp.arrays(np.float32, (B, T), elements=floats),
  hnp.arrays(np.float32, (B, T), elements=floats),
  row_lengths,
)
def test_gae_ignores_appended_padding(rewards, values, lengths):
  mask = _mask(lengths, T)
  base = _gae(rewards, values, mask)
  # Widen to T + PAD with NaN garbage under a zero mask: same JIT shape for
  # every example, so compile once per shape.
  padded = _gae_wide(
    _pad(rewards, np.nan), _pad(values, np.inf), _pad(mask, 0.0)
  )
  # Rewards and values up to 10 through a 5-step recursion: the error of an
  # entry near 0 is relative to the terms that cancel in it, so the absolute
  # floor scales with the inputs' magnitude.
  tol.assert_close(
    padded[:, :T], base, tol.FEW_OPS, scale=tol.magnitude(rewards, values)
  )
  np.testing.assert_array_equal(padded[:, T:], 0.0)  # masked: constant 0


@jax.jit
def _gae_wide(r, v, m):
  return rl.gae_advantages(r, v, m, gamma=0.9, lam=0.7)[0]


@PROPERTY
@given(hnp.arrays(np.float32, (B, T), elements=floats), row_lengths)
def test_aggregation_ignores_appended_padding(loss, lengths):
  mask = _mask(lengths, T)
  for mode in rl.LOSS_AGG_MODES:
    base = rl.aggregate_loss(loss, mask, mode, max_len=T)
    padded = rl.aggregate_loss(
      _pad(loss, np.nan), _pad(mask, 0.0), mode, max_len=T
    )
    tol.assert_close(padded, base, tol.FEW_OPS, scale=tol.magnitude(loss))


@PROPERTY
@given(hnp.arrays(np.float32, (8,), elements=floats))
def test_group_advantages_zero_mean_unit_std(rewards):
  adv = np.asarray(rl.group_advantages(rewards, 4)).reshape(2, 4)
  grouped = rewards.reshape(2, 4)
  for g in range(2):
    spread = float(np.ptp(grouped[g]))
    if spread == 0:  # r - mean is exactly 0 for equal rewards
      np.testing.assert_array_equal(adv[g], 0.0)
    elif spread > 1e-2:
      # r - mean rounds at eps * max |r|, then is divided by a std of at
      # least spread / 2.5 (the 1e-6 std eps is below that too).
      scale = tol.magnitude(grouped[g]) / spread
      tol.assert_close(adv[g].mean(), 0.0, tol.FEW_OPS, scale=scale)
      tol.assert_close(adv[g].std(ddof=1), 1.0, tol.FEW_OPS, scale=scale)
  rloo = np.asarray(rl.rloo_advantages(rewards, 4)).reshape(2, 4)
  for i in range(4):
    others = np.delete(grouped, i, axis=1).mean(-1)
    tol.assert_close(
      rloo[:, i],
      grouped[:, i] - others,
      tol.FEW_OPS,
      scale=tol.magnitude(rewards),
    )


@PROPERTY
@given(
  hnp.arrays(np.float32, (B, T), elements=st.floats(-3, 3, width=32)),
  hnp.arrays(np.float32, (B, T), elements=floats),
)
def test_unclipped_region_equals_importance_weighted_advantage(lr, adv):
  # With ratios inside [1 - eps, 1 + eps_high] nothing is clipped, so the
  # loss is -mean(rho * A).
  log_ratio = np.clip(lr * 0.05, np.log(0.81), np.log(1.27))
  old = jnp.zeros((B, T))
  loss, m = rl.ppo_policy_loss(
    jnp.asarray(log_ratio), old, adv, jnp.ones((B, T)), 0.2, 0.28
  )
  # A 20-term mean of rho * A, |A| <= 10, rho ~ 1: the mean cancels terms
  # of size max |A|.
  tol.assert_close(
    loss,
    -np.mean(np.exp(log_ratio) * adv),
    tol.FEW_OPS,
    scale=tol.magnitude(adv),
  )
  assert float(m['clip_fraction']) == 0.0  # no token clipped: exact count
