"""Shape contracts of the public `[B, T]` functions of common.rl.

A `[T]` array where `[B, T]` is promised, or a mask of another shape, raises
chex's `AssertionError` (`rl.ShapeError`, also a `ValueError`) naming the
argument, at trace time: the same error with and without jit.
"""

import chex
import jax.numpy as jnp
from absl.testing import parameterized

from common import rl

BT = jnp.zeros((2, 3))
T = jnp.zeros(3)
B = jnp.zeros(2)
MASK_BAD = jnp.ones((2, 4))

# (name, function of its array arguments, good arguments, index of the
# argument to break, name the message must contain).
RANK_CASES = [
  ('gae', lambda r, v, m: rl.gae_advantages(r, v, m), (BT, BT, BT), 0,
   'rewards'),
  ('aggregate_loss', rl.aggregate_loss, (BT, BT), 0, 'per_token_loss'),
  ('ppo_policy_loss', rl.ppo_policy_loss, (BT, BT, BT, BT), 0, 'logprobs'),
  ('clipped_value_loss', rl.clipped_value_loss, (BT, BT, BT, BT), 0,
   'values'),
  ('sequence_logprob', rl.sequence_logprob, (BT, BT), 0, 'logprobs'),
  ('apply_kl_penalty', lambda *a: rl.apply_kl_penalty(*a, beta=0.1),
   (BT, BT, BT, BT), 0, 'token_rewards'),
  ('broadcast_to_tokens', rl.broadcast_to_tokens, (B, BT), 1, 'mask'),
  ('group_advantages', lambda r: rl.group_advantages(r, 2), (B,), None,
   'rewards'),
  ('dpo_loss', rl.dpo_loss, (B, B, B, B), None, 'policy_chosen_logps'),
]  # fmt: skip

MASK_CASES = [
  ('gae', lambda r, v, m: rl.gae_advantages(r, v, m), (BT, BT, BT), 2),
  ('aggregate_loss', rl.aggregate_loss, (BT, BT), 1),
  ('ppo_policy_loss', rl.ppo_policy_loss, (BT, BT, BT, BT), 3),
  ('clipped_value_loss', rl.clipped_value_loss, (BT, BT, BT, BT), 3),
  ('sequence_logprob', rl.sequence_logprob, (BT, BT), 1),
  ('apply_kl_penalty', lambda *a: rl.apply_kl_penalty(*a, beta=0.1),
   (BT, BT, BT, BT), 3),
  ('kl_divergence', rl.kl_divergence, (BT, BT), 1),
  ('whiten', rl.whiten, (BT, BT), 1),
]  # fmt: skip


def _break_rank(args, index):
  if index is None:  # a [B] function given [B, T]
    return (BT,) + tuple(args[1:])
  return tuple(T if i == index else a for i, a in enumerate(args))


class ShapeContractTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*RANK_CASES)
  def test_wrong_rank_names_the_argument(self, fn, args, index, name):
    fn = self.variant(fn)
    jax_out = fn(*args)  # the good shapes pass
    chex.assert_tree_all_finite(jax_out)
    with self.assertRaisesRegex(AssertionError, rf'\[Chex\].*{name} must'):
      fn(*_break_rank(args, index))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*MASK_CASES)
  def test_mismatched_mask_raises_chex_error(self, fn, args, mask_index):
    fn = self.variant(fn)
    bad = tuple(MASK_BAD if i == mask_index else a for i, a in enumerate(args))
    with self.assertRaisesRegex(
      AssertionError, r'assert_equal_shape failed.*Shape mismatch.*\(2, 4\)'
    ):
      fn(*bad)

  def test_shape_error_is_also_a_value_error(self):
    # Callers that catch the library's bad-input ValueError still do.
    assert issubclass(rl.ShapeError, AssertionError)
    assert issubclass(rl.ShapeError, ValueError)
    with self.assertRaisesRegex(ValueError, r'advantages=\(3,\)'):
      rl.broadcast_to_tokens(jnp.zeros(3), BT)
    with self.assertRaisesRegex(rl.ShapeError, 'bootstrap_value'):
      rl.gae_advantages(BT, BT, BT, bootstrap_value=jnp.zeros(3))
    with self.assertRaisesRegex(rl.ShapeError, 'targets.shape'):
      rl.token_logprobs(jnp.zeros((2, 3)), jnp.zeros((2, 3), jnp.int32))

  def test_eight_cpu_devices(self):
    # conftest's jax_num_cpu_devices: the with_pmap variants use all 8.
    chex.assert_devices_available(8, 'cpu')
