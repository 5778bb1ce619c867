"""Multi-turn rollout: KV-cache log-probs, masks, ragged finishing."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from common import models
from common import retrieval as R
from common import sampling
from common.synthetic.traces import format_documents
from common.tokenizers import WordTokenizer
from common.train import sft
from pica import protocol
from pica import rollout as RO

DOCS = [
  {'id': '0', 'contents': '"Kalo"\nKalo was born in Varen.'},
  {'id': '1', 'contents': '"Varen"\nVaren is in Dorvik.'},
  {'id': '2', 'contents': '"Thanu"\nThanu was founded by Kalo.'},
]
PROMPTS = ['Question: who founded Thanu?', 'Question: where is Varen?'] * 3


RESPONSES = [
  '<search> Thanu founded </search> <information> x </information> '
  '<answer> Kalo </answer>',
  '<search> Varen </search> <information> x </information> <search> Dorvik '
  '</search> <information> x </information> <answer> Dorvik </answer>',
  '<answer> Varen </answer>',
]


def _warm_start(model, tok):
  """A few SFT steps so that a random tiny model issues searches."""
  batch = sft.encode_sft(tok, PROMPTS[:3], RESPONSES, max_len=40)
  graphdef, params = models.split(model)
  loss_fn = sft.make_sft_loss(models.apply_fn(graphdef))
  opt = optax.adam(1e-2)
  opt_state = opt.init(params)

  @jax.jit
  def step(params, opt_state):
    grads = jax.grad(lambda p: loss_fn(p, batch)[0])(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  for _ in range(25):
    params, opt_state = step(params, opt_state)
  return models.merge(graphdef, params)


@pytest.fixture(scope='module')
def setup():
  tok = WordTokenizer.build(
    [d['contents'] for d in DOCS] + PROMPTS + ['x', format_documents(DOCS)],
    strict=True,
  )
  cfg = models.get_preset('tiny', vocab_size=tok.vocab_size)
  model = _warm_start(models.Transformer(cfg, rngs=nnx.Rngs(0)), tok)
  return tok, model, R.BM25Retriever(DOCS)


def test_rollout_kv_cache_matches_full_forward(setup):
  tok, model, ret = setup
  config = RO.RolloutConfig(
    max_turns=3, max_new_tokens=12, topk=2, max_info_tokens=40
  )
  p_len = 12
  sampler = sampling.Sampler(model, capacity=config.capacity(p_len))
  ro = RO.rollout(
    sampler, tok, PROMPTS, ret, jax.random.key(3), config, prompt_len=p_len
  )
  b, r = ro.tokens.shape
  assert (b, r) == (6, config.response_len)
  assert not np.any(ro.loss_mask & ~ro.response_mask)
  # This seed exercises served searches and rows ending at different turns.
  assert ro.num_searches.max() >= 1
  assert len(set(ro.response_mask.sum(1).tolist())) > 1
  # Each served search is followed by its retrieved block, which is never
  # in the loss mask (the policy's own tokens are).
  close_i = tok.token_id('</information>')
  env = ro.response_mask & ~ro.loss_mask
  close_s = tok.token_id('</search>')
  for i in range(b):
    k = ro.num_searches[i]
    ends = ro.search_ends[i, :k]
    assert np.all(ro.tokens[i, ends] == close_s)
    assert np.all(ro.search_ends[i, k:] == -1)
    for e in ends:
      assert ro.tokens[i, e + 1] == tok.token_id('<information>')
      stop = e + 1 + list(ro.tokens[i, e + 1 :]).index(close_i)
      assert env[i, e + 1 : stop + 1].all()
      assert ro.loss_mask[i, stop + 1] or not ro.response_mask[i, stop + 1]
    assert len(ro.queries[i]) == len(ro.retrieved[i]) == k
    assert all(len(d) == 2 for d in ro.retrieved[i])
    assert ro.finish[i] in RO.FINISH
  # Sampling log-probs equal a single full forward over prompt + response.
  toks = jnp.concatenate([ro.prompt_tokens, ro.tokens], 1)
  mask = jnp.concatenate([ro.prompt_mask, ro.response_mask], 1)
  logits = model(toks, attention_mask=mask).logits
  lp = jax.nn.log_softmax(logits[:, p_len - 1 : -1], -1)
  lp = jnp.take_along_axis(lp, jnp.asarray(ro.tokens)[..., None], -1)[..., 0]
  np.testing.assert_allclose(
    np.where(ro.loss_mask, lp, 0.0), ro.logprobs, atol=2e-4
  )


class _ScriptedSampler:
  """Emits fixed per-row turns; records appended observations."""

  def __init__(self, turns, capacity=10_000):
    self.turns, self.capacity, self.turn = turns, capacity, 0
    self.appended = []

  def prefill(self, tokens, mask):
    b = tokens.shape[0]
    return sampling.SamplerState(None, None, jnp.zeros((b,), bool))

  def generate(self, state, rng, cfg):
    rows = [t[self.turn] if self.turn < len(t) else [] for t in self.turns]
    self.turn += 1
    n = cfg.max_new_tokens
    toks = np.zeros((len(rows), n), np.int32)
    mask = np.zeros((len(rows), n), bool)
    reason = np.zeros(len(rows), np.int32)
    for i, ids in enumerate(rows):
      toks[i, : len(ids)], mask[i, : len(ids)] = ids, True
      if ids and ids[-1] in (
        cfg.stop_sequences[0][0],
        cfg.stop_sequences[1][0],
      ):
        reason[i] = sampling.sampler.FINISH_STOP
      elif ids and ids[-1] in cfg.eos_ids:
        reason[i] = sampling.sampler.FINISH_EOS
      elif ids:
        reason[i] = sampling.sampler.FINISH_LENGTH
    out = sampling.GenerationOutput(
      toks, np.full((len(rows), n), -0.5) * mask, mask, mask.sum(1), reason
    )
    return state, out

  def append(self, state, tokens, mask):
    self.appended.append((np.asarray(tokens), np.asarray(mask)))
    return state


def test_rollout_orchestration_scripted(setup):
  tok, _, ret = setup
  e = tok.encode
  search = e('<search> Kalo born </search>')
  bad = e('<search> </search>')
  ans = e('<answer> Varen </answer>')
  turns = [
    [ans],  # answers at once
    [search, ans],  # one search
    [bad, search, search],  # invalid, then two searches, out of turns
    [e('Kalo') + [tok.eos_id]],  # EOS
  ]
  config = RO.RolloutConfig(
    max_turns=2,
    max_new_tokens=8,
    topk=1,
    max_info_tokens=30,
    warning_text='Kalo',
  )
  s = _ScriptedSampler(turns)
  ro = RO.rollout(s, tok, ['Question: x'] * 4, ret, jax.random.key(0), config)
  assert ro.finish == ['answer', 'answer', 'turns', 'eos']
  assert ro.num_searches.tolist() == [0, 1, 1, 0]
  assert ro.queries[1] == ['Kalo born'] and ro.retrieved[1] == [['0']]
  assert ro.search_ends[1].tolist() == [len(search) - 1, -1]
  # row 2: invalid search -> warning block, then a served search; its third
  # turn is the final no-search turn.
  warn = RO.observation_ids(tok, ' <warning> Kalo </warning> ', 30)
  n_warn = len(bad) + len(warn)
  assert ro.search_ends[2, 0] == n_warn + len(search) - 1
  assert ro.tokens[2, len(bad) : n_warn].tolist() == warn
  assert not ro.loss_mask[2, len(bad) : n_warn].any()
  assert protocol.parse_trajectory(ro.texts[1]).format_ok
  assert protocol.parse_trajectory(ro.texts[1]).answer == 'Varen'
  assert not protocol.parse_trajectory(ro.texts[2]).format_ok
  # generated tokens carry their log-probs, environment tokens 0
  np.testing.assert_array_equal(ro.logprobs != 0, ro.loss_mask)
  # observation chunks have the fixed width (one compilation)
  assert {a[0].shape for a in s.appended} == {(4, 30)}


def test_observation_truncation_and_config_errors(setup):
  tok, _, _ = setup
  text = ' <information> ' + 'Kalo ' * 50 + '</information> '
  ids = RO.observation_ids(tok, text, 10)
  assert len(ids) == 10 and ids[-1] == tok.token_id('</information>')
  with pytest.raises(ValueError, match='max_turns'):
    RO.RolloutConfig(max_turns=-1)
  with pytest.raises(ValueError, match='capacity'):
    RO.rollout(
      sampling.Sampler(setup[1], capacity=8),
      tok,
      ['Question: x'],
      setup[2],
      jax.random.key(0),
      RO.RolloutConfig(),
    )
