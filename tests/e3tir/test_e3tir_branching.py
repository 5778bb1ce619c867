"""KV-cache forking and branch growth against re-prefilled prefixes."""

import jax
import numpy as np
import pytest
from flax import nnx

from common import models
from common.retrieval import BM25Retriever
from common.sampling import fork
from common.sampling import multiturn
from common.sampling import sampler as sampler_lib
from common.tokenizers import WordTokenizer
from e3tir import branching
from e3tir import tools
from tests import tolerances as tol

DOCS = [{'id': '0', 'contents': '"Kalo"\nKalo was born in Varen.'}]
EXPERT = '<calc> 12 * 7 </calc> <result> 84 </result> <answer> 84 </answer>'


@pytest.fixture(scope='module')
def setup():
  tok = WordTokenizer.build(
    ['Problem: What is 12 * 7?', EXPERT, DOCS[0]['contents'], 'invalid tool '
     'call Doc Title error'],
  )  # fmt: skip
  cfg = models.build_config(
    {'preset': 'tiny', 'd_model': 32, 'n_layers': 1, 'd_ff': 64},
    vocab_size=tok.vocab_size, max_seq_len=128,
  )  # fmt: skip
  model = models.Transformer(cfg, rngs=nnx.Rngs(0))
  return tok, sampler_lib.Sampler(model, capacity=128)


def test_fork_equals_reprefill(setup):
  tok, sampler = setup
  ids = [
    tok.encode('Problem: What is 12 * 7?', add_bos=True) + tok.encode(EXPERT)
  ]
  ids.append(ids[0][:9])
  t = max(len(x) for x in ids)
  toks = np.zeros((2, t), np.int32)
  mask = np.zeros((2, t), bool)
  for i, x in enumerate(ids):  # right-padded
    toks[i, : len(x)], mask[i, : len(x)] = x, True
  state, logits = fork.teacher_force(sampler, toks, mask)
  lengths = [5, 12, 5, 9]
  forked = fork.fork(state, logits, mask, [0, 0, 1, 1], lengths)
  cfg = sampler_lib.GenerationConfig(6, temperature=0.0, pad_id=tok.pad_id)
  _, got = sampler.generate(forked, jax.random.key(0), cfg)
  src = [ids[0][:5], ids[0][:12], ids[1][:5], ids[1][:9]]
  ref_t = np.zeros((4, 12), np.int32)
  ref_m = np.zeros((4, 12), bool)
  for i, x in enumerate(src):
    ref_t[i, 12 - len(x) :], ref_m[i, 12 - len(x) :] = x, True
  _, want = sampler.generate(
    sampler.prefill(ref_t, ref_m), jax.random.key(0), cfg
  )
  # Greedy tokens from the same prefix: identical ids.
  np.testing.assert_array_equal(np.asarray(got.tokens), np.asarray(want.tokens))
  # Log-probs through a cached vs a fresh prefix: a deep float32 path
  # (attention over the prefix, log-softmax), scaled by their magnitude.
  tol.assert_close(got.logprobs, want.logprobs, tol.DEEP)
  with pytest.raises(ValueError, match='prefix_lengths'):
    fork.fork(state, logits, mask, [1], [10])


def test_grow_branches(setup):
  tok, sampler = setup
  env = tools.ToolIntegratedEnvironment(
    {'calc': tools.calculator_tool,
     'search': tools.retrieval_tool(BM25Retriever(DOCS), 1)}
  )  # fmt: skip
  mt = multiturn.MultiTurnConfig(
    max_calls=2, max_new_tokens=6, max_obs_tokens=8
  )
  pt, pm = multiturn.left_pad(tok, ['Problem: What is 12 * 7?'] * 2)
  ex = branching.encode_experts(tok, [EXPERT, EXPERT])
  # Observation tokens are not the expert's own: `<result> 84 </result>`.
  np.testing.assert_array_equal(
    ex[0].policy, [True] * 6 + [False] * 4 + [True] * 4
  )
  e = len(ex[0].ids)
  args = (sampler, tok, env, pt, pm, ex, jax.random.key(1), mt)
  br = branching.grow(*args, num_anchors=2, branches_per_anchor=3, expert_len=e)
  assert br.tokens.shape == (12, e + mt.response_len)
  for r in range(12):
    a = br.anchors[r // 6, (r % 6) // 3]
    assert 1 <= a < e and ex[0].policy[a]
    np.testing.assert_array_equal(br.tokens[r, :a], ex[0].ids[:a])
    assert br.prefix_mask[r].sum() == a
    # Observation tokens of the prefix are never trained on.
    assert not np.any(br.loss_mask[r, :a] & ~ex[0].policy[:a])
  # The anchors are the top-2 entropies among candidates.
  ent = br.entropy[0].copy()
  ent[~branching.anchor_candidates(ex[0])] = -np.inf
  assert set(br.anchors[0]) == set(np.argsort(-ent, kind='stable')[:2])
  with pytest.raises(ValueError, match='anchor positions'):
    branching.grow(*args, num_anchors=20, branches_per_anchor=1, expert_len=e)
  with pytest.raises(ValueError, match='must be >= 1'):
    branching.grow(*args, num_anchors=1, branches_per_anchor=0, expert_len=e)
