"""Tests of KV-cache generation against full-prefix recomputation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common import models
from common import sampling
from common.sampling import sampler as sampler_lib
from tests import tolerances as tol

_LMAX = 48  # reference buffer [_REF_ROWS, _LMAX]: one compile for all tests
_REF_ROWS = 4
_CAPACITY = 48
_PROMPTS = [[5, 17, 99], [1, 2, 3, 4, 250, 6, 7], [42, 42, 8, 9, 10]]


class _Setup:
  """A tiny untied model with larger-than-init weights (varied greedy paths)
  and a jitted full-recompute reference."""

  def __init__(self):
    self.cfg = models.get_preset('tiny', tie_embeddings=False)
    self.model = models.Transformer(self.cfg, rngs=nnx.Rngs(0))
    state = nnx.state(self.model, nnx.Param)
    nnx.update(
      self.model, jax.tree.map(lambda x: x * 12.0 if x.ndim == 2 else x, state)
    )
    self._fwd = jax.jit(lambda m, x: m(x).logits)
    # One sampler (and its compiled loops) shared by the tests.
    self.sampler = sampling.Sampler(self.model, capacity=_CAPACITY)
    self.greedy_cfg = sampling.GenerationConfig(10, temperature=0.0)
    self.sample_cfg = sampling.GenerationConfig(12, temperature=1.5, top_k=5)
    # EOS / stop sequence taken from the model's own greedy paths, so that
    # rows stop at different steps for different reasons.
    self.free, _ = self.greedy(_PROMPTS, 10)
    # Typical logit magnitude (the final RMSNorm bounds it), for tolerances.
    self.logit_scale = tol.magnitude(self.last_logits(_PROMPTS))
    self.stop_cfg = sampling.GenerationConfig(
      10,
      temperature=0.0,
      eos_ids=(int(self.free[0, 3]),),
      stop_sequences=((int(self.free[1, 4]), int(self.free[1, 5])),),
    )

  def last_logits(self, seqs):
    """Full forward over each whole sequence; logits after its last token."""
    buf = np.zeros((_REF_ROWS, _LMAX), np.int32)
    for r, s in enumerate(seqs):
      buf[r, : len(s)] = s  # right padding cannot affect earlier tokens
    logits = np.asarray(self._fwd(self.model, jnp.asarray(buf)))
    return np.stack([logits[r, len(s) - 1] for r, s in enumerate(seqs)])

  def greedy(self, seqs, n):
    """Greedy continuation by full recompute: tokens, log-probs `[B, n]`."""
    seqs = [list(s) for s in seqs]
    toks, lps = [], []
    for _ in range(n):
      logits = self.last_logits(seqs)
      t = logits.argmax(-1)
      lps.append(jax.nn.log_softmax(logits)[np.arange(len(seqs)), t])
      toks.append(t)
      for r in range(len(seqs)):
        seqs[r].append(int(t[r]))
    return np.stack(toks, 1), np.stack(lps, 1)


@pytest.fixture(scope='module')
def setup():
  return _Setup()


def _assert_logprobs_close(got, want, logit_scale):
  """Log-probs of two float32 programs through the model.

  KV cache vs full recompute, or two paddings: a matmul chain and a
  softmax, so `REDUCTION`; a log-prob `z_t - logsumexp(z)` carries the
  error of the logits `z`, so the absolute floor scales with their
  magnitude.
  """
  tol.assert_close(got, want, tol.REDUCTION, scale=logit_scale)


def _left_pad(prompts):
  t = max(len(p) for p in prompts)
  toks = np.zeros((len(prompts), t), np.int32)
  mask = np.zeros((len(prompts), t), bool)
  for r, p in enumerate(prompts):
    toks[r, t - len(p) :] = p
    mask[r, t - len(p) :] = True
  return toks, mask


def test_greedy_equals_full_recompute(setup):
  sampler = sampling.Sampler(setup.model, capacity=32)
  toks, mask = _left_pad(_PROMPTS)
  out = sampler.sample(
    toks,
    mask,
    jax.random.key(0),
    sampling.GenerationConfig(10, temperature=0.0),
  )
  want_toks, want_lps = setup.greedy(_PROMPTS, 10)
  np.testing.assert_array_equal(out.tokens, want_toks)
  _assert_logprobs_close(out.logprobs, want_lps, setup.logit_scale)
  assert len(set(want_toks.ravel().tolist())) > 5  # non-degenerate paths
  assert np.asarray(out.mask).all()
  np.testing.assert_array_equal(out.lengths, [10, 10, 10])
  assert sampling.finish_reason_names(out.finish_reason) == ['length'] * 3


def test_sampled_logprobs_and_top_k_match_recompute(setup):
  toks, mask = _left_pad(_PROMPTS)
  k = setup.sample_cfg.top_k
  out = setup.sampler.sample(toks, mask, jax.random.key(1), setup.sample_cfg)
  seqs = [list(p) for p in _PROMPTS]
  gen = np.asarray(out.tokens)
  for i in range(12):
    logits = setup.last_logits(seqs)
    ref_lp = np.asarray(jax.nn.log_softmax(logits))
    top = np.argsort(-logits, axis=-1)[:, :k]
    for r in range(3):
      assert gen[r, i] in top[r], (r, i)
      _assert_logprobs_close(
        out.logprobs[r, i], ref_lp[r, gen[r, i]], tol.magnitude(logits)
      )
      seqs[r].append(int(gen[r, i]))
  # Sampling (not greedy): some token differs from the argmax.
  assert (gen != setup.greedy(_PROMPTS, 12)[0]).any()


def test_top_k_never_samples_outside_top_k():
  logits = jax.random.normal(jax.random.key(0), (4, 50)) * 3
  keys = jax.random.split(jax.random.key(1), 2000)
  draw = jax.vmap(lambda kk: sampling.choose_tokens(logits, kk, 1.0, top_k=3))
  samples = np.asarray(draw(keys))  # [2000, 4]
  top3 = np.argsort(-np.asarray(logits), -1)[:, :3]
  for r in range(4):
    assert set(samples[:, r].tolist()) <= set(top3[r].tolist())
    assert len(set(samples[:, r].tolist())) > 1  # really sampling


def test_top_k_and_temperature_hand_case():
  logits = jnp.array([[1.0, 5.0, 3.0, 4.0]])
  out = np.asarray(sampling.top_k_filter(logits, 2))
  np.testing.assert_array_equal(out, [[-np.inf, 5.0, -np.inf, 4.0]])
  out = np.asarray(sampling.sampling_logits(logits, 2.0, top_k=3))
  np.testing.assert_array_equal(out, [[-np.inf, 2.5, 1.5, 2.0]])
  np.testing.assert_array_equal(
    sampling.choose_tokens(logits, jax.random.key(0), 0.0), [1]
  )


def test_top_p_hand_case():
  logits = jnp.log(jnp.array([[0.05, 0.5, 0.15, 0.3]]))
  keep = lambda p: np.isfinite(np.asarray(sampling.top_p_filter(logits, p)))
  # Mass strictly before each token (sorted): 0.5 -> 0, 0.3 -> 0.5,
  # 0.15 -> 0.8, 0.05 -> 0.95. Kept iff that mass < p.
  np.testing.assert_array_equal(keep(0.5)[0], [False, True, False, False])
  np.testing.assert_array_equal(keep(0.7)[0], [False, True, False, True])
  np.testing.assert_array_equal(keep(0.85)[0], [False, True, True, True])
  np.testing.assert_array_equal(keep(1.0)[0], [True, True, True, True])
  # Sampling renormalises over the nucleus: P(1) = 0.5 / 0.8.
  keys = jax.random.split(jax.random.key(0), 4000)
  s = np.asarray(
    jax.vmap(lambda kk: sampling.choose_tokens(logits, kk, 1.0, top_p=0.7))(
      keys
    )
  )
  assert set(s.ravel().tolist()) == {1, 3}
  assert abs((s == 1).mean() - 0.625) < 0.03


def _expected_stops(gen, eos, stops):
  """Per row: (length, reason) from an unconstrained greedy path."""
  res = []
  for row in gen.tolist():
    for i, t in enumerate(row):
      if t in eos:
        res.append((i + 1, 'eos'))
        break
      if any(
        i + 1 >= len(s) and tuple(row[i + 1 - len(s) : i + 1]) == s
        for s in stops
      ):
        res.append((i + 1, 'stop'))
        break
    else:
      res.append((len(row), 'length'))
  return res


def test_eos_and_stop_sequences_stop_rows_independently(setup):
  cfg = setup.stop_cfg
  free = setup.free
  want = _expected_stops(free, cfg.eos_ids, cfg.stop_sequences)
  assert {'eos', 'stop'} <= {r for _, r in want}, want
  state, out = setup.sampler.generate(
    setup.sampler.prefill(*_left_pad(_PROMPTS)), jax.random.key(0), cfg
  )
  assert sampling.finish_reason_names(out.finish_reason) == [r for _, r in want]
  np.testing.assert_array_equal(out.lengths, [n for n, _ in want])
  for r, (length, _) in enumerate(want):
    np.testing.assert_array_equal(out.tokens[r, :length], free[r, :length])
    assert not np.asarray(out.mask[r, length:]).any()
    assert (np.asarray(out.tokens[r, length:]) == cfg.pad_id).all()
    assert (np.asarray(out.logprobs[r, length:]) == 0).all()  # masked: 0
  np.testing.assert_array_equal(state.finished, [r == 'eos' for _, r in want])
  # Every generated token (stop/EOS included) is in the cache.
  cached = [len(p) + n for p, (n, _) in zip(_PROMPTS, want, strict=True)]
  np.testing.assert_array_equal(state.cache.lengths, cached)


def test_left_padding_invariance(setup):
  p = [9, 8, 7, 6]
  narrow = [p, [1, 2, 3, 4, 5, 6, 7], [3, 3]]  # row 0: 3 pads
  wide = [p, list(range(20, 31)), [3, 3]]  # row 0: 7 pads
  key = jax.random.key(3)
  for cfg in (setup.greedy_cfg, setup.sample_cfg):
    a = setup.sampler.sample(*_left_pad(narrow), key, cfg)
    b = setup.sampler.sample(*_left_pad(wide), key, cfg)
    np.testing.assert_array_equal(a.tokens[0], b.tokens[0])
    _assert_logprobs_close(a.logprobs[0], b.logprobs[0], setup.logit_scale)
    np.testing.assert_array_equal(a.tokens[2], b.tokens[2])


def test_multi_turn_tool_use_equals_full_recompute(setup):
  sampler, cfg = setup.sampler, setup.stop_cfg
  state, out1 = sampler.generate(
    sampler.prefill(*_left_pad(_PROMPTS)), jax.random.key(0), cfg
  )
  reasons = sampling.finish_reason_names(out1.finish_reason)
  assert reasons[:2] == ['eos', 'stop'], reasons
  # Row 0 hit EOS (finished). Row 2 "answered": the caller marks it
  # finished. Both stay masked; row 1 gets its tool output appended.
  state = state._replace(finished=state.finished.at[2].set(True))
  tools = [[], [21, 22, 23, 24, 25], [11, 12]]  # ragged; row 2 ignored
  tool_toks = np.zeros((3, 5), np.int32)
  tool_mask = np.zeros((3, 5), bool)
  for r, t in enumerate(tools):
    tool_toks[r, : len(t)] = t
    tool_mask[r, : len(t)] = True
  tool_mask[2] = False
  state = sampler.append(state, tool_toks, tool_mask)
  state, out2 = sampler.generate(state, jax.random.key(1), cfg)
  assert sampling.finish_reason_names(out2.finish_reason)[0] == 'none'
  assert sampling.finish_reason_names(out2.finish_reason)[2] == 'none'
  np.testing.assert_array_equal(np.asarray(out2.lengths)[[0, 2]], [0, 0])
  assert int(out2.lengths[1]) > 0
  # A second append + generate round on row 1 (and a new tool for row 0,
  # whose EOS finished it: it is written but the row stays finished).
  tool2 = np.array([[7, 7, 0], [31, 32, 33], [0, 0, 0]], np.int32)
  mask2 = np.array([[True, True, False], [True, True, True], [False] * 3])
  state = sampler.append(state, tool2, mask2)
  state, out3 = sampler.generate(state, jax.random.key(2), cfg)
  assert int(out3.lengths[0]) == 0 and int(out3.lengths[1]) > 0
  # Reference for row 1: the whole sequence recomputed from scratch.
  seq = (
    _PROMPTS[1]
    + np.asarray(out1.tokens[1, : out1.lengths[1]]).tolist()
    + tools[1]
  )
  for out, tail in ((out2, [31, 32, 33]), (out3, [])):
    for i in range(int(out.lengths[1])):
      logits = setup.last_logits([seq])[0]
      tok = int(out.tokens[1, i])
      assert tok == int(logits.argmax()), i
      _assert_logprobs_close(
        out.logprobs[1, i],
        jax.nn.log_softmax(logits)[tok],
        tol.magnitude(logits),
      )
      seq.append(tok)
    seq += tail


def test_errors_and_update(setup):
  sampler = setup.sampler
  toks, mask = _left_pad(_PROMPTS)
  state = sampler.prefill(toks, mask)
  with pytest.raises(ValueError, match=f'capacity {_CAPACITY}'):
    sampler.generate(
      state,
      jax.random.key(0),
      sampling.GenerationConfig(_CAPACITY, temperature=0.0),
    )
  with pytest.raises(ValueError, match=r'rows \[1\] have no real token'):
    sampler.prefill(toks, mask & np.array([[True], [False], [True]]))
  with pytest.raises(ValueError, match=r'token ids must lie in \[0, 256\)'):
    sampler.prefill(toks + 300, mask)
  with pytest.raises(ValueError, match='top_p must be in'):
    sampling.GenerationConfig(4, top_p=0.0)
  with pytest.raises(ValueError, match='temperature must be >= 0'):
    sampling.GenerationConfig(4, temperature=-1.0)
  with pytest.raises(ValueError, match='max_new_tokens'):
    sampling.GenerationConfig(0)
  # New parameters, same compiled loop.
  before = sampler.generate(state, jax.random.key(0), setup.greedy_cfg)[1]
  compiled = sampler_lib._generate_jit._cache_size()
  try:
    sampler.update(models.Transformer(setup.cfg, rngs=nnx.Rngs(5)))
    after = sampler.generate(
      sampler.prefill(toks, mask), jax.random.key(0), setup.greedy_cfg
    )[1]
    assert sampler_lib._generate_jit._cache_size() == compiled
    # A second sampler over the same architecture reuses the compilation.
    other = sampling.Sampler(setup.model, capacity=sampler.capacity)
    other.generate(
      other.prefill(toks, mask), jax.random.key(1), setup.greedy_cfg
    )
    assert sampler_lib._generate_jit._cache_size() == compiled
    assert not np.array_equal(before.tokens, after.tokens)
  finally:
    sampler.update(setup.model)
