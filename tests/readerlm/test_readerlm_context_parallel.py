"""readerlm.context_parallel: the model through ring attention == dense."""

import jax
import numpy as np
import pytest
from flax import nnx

from common import models
from common import synthetic
from readerlm import context_parallel as cp
from readerlm import pages
from readerlm import prompt
from tests import tolerances as tol


def _model(scan_layers=False):
  cfg = models.build_config(
    {'preset': 'tiny', 'd_model': 32, 'n_layers': 2, 'n_heads': 4,
     'n_kv_heads': 2, 'd_ff': 64, 'scan_layers': scan_layers},
    vocab_size=260, max_seq_len=4096,
  )  # fmt: skip
  return models.split(models.Transformer(cfg, rngs=nnx.Rngs(0)))


def _page_tokens():
  """A long cleaned page prompt (bytes as tokens) and a shorter second row."""
  world = synthetic.build_knowledge_world(
    synthetic.KnowledgeWorldConfig.tiny(0)
  )
  page = pages.build_pages(world, pages.PageConfig(max_pages=4), seed=0)
  page = page['train'][0]
  text = prompt.instruction_prompt(prompt.clean_html(page['html']))
  text += page['markdown']
  long = np.frombuffer(text.encode()[:1024], np.uint8).astype(np.int32)
  return [long, long[:301] + 1]


def _dense(graphdef, params, seq):
  out = nnx.merge(graphdef, params)(np.asarray(seq)[None])
  return np.asarray(out.logits[0]), np.asarray(out.hidden[0])


def test_pack_unpack_hand_computed():
  # d=1, lengths 3 and 2 padded to 4 and 2 (multiples of 2d): the "a"
  # halves (seq 0 tokens 0-1, seq 1 token 0), then the "b" halves (seq 0
  # token 2 and a pad, seq 1 token 1).
  p = cp.pack([[5, 6, 7], [8, 9]], 1)
  np.testing.assert_array_equal(p.tokens, [5, 6, 8, 7, 0, 9])
  np.testing.assert_array_equal(p.layout.segment, [0, 0, 1, 0, -1, 1])
  np.testing.assert_array_equal(p.layout.position, [0, 1, 0, 2, 0, 1])
  rows = p.unpack(np.arange(6) * 10)
  np.testing.assert_array_equal(rows[0], [0, 10, 30])
  np.testing.assert_array_equal(rows[1], [20, 50])


@pytest.mark.parametrize('scan_layers', [False, True])
def test_ring_forward_equals_dense_on_a_long_page(scan_layers):
  assert jax.device_count() == 8
  graphdef, params = _model(scan_layers)
  seqs = _page_tokens()
  mesh = cp.make_ring_mesh(8)
  logits, hidden = cp.ring_forward(graphdef, params, seqs, mesh)
  for seq, lg, hd in zip(seqs, logits, hidden, strict=True):
    want_l, want_h = _dense(graphdef, params, seq)
    # Two float32 programs through the model that order their sums
    # differently (ring online softmax vs one dense softmax).
    tol.assert_close(lg, want_l, tol.REDUCTION)
    tol.assert_close(hd, want_h, tol.REDUCTION)


@pytest.mark.slow
def test_ring_logprobs_and_gradient_match_dense():
  graphdef, params = _model()
  seqs = _page_tokens()
  starts = [800, 250]
  mesh = cp.make_ring_mesh(8)
  got = cp.ring_token_logprobs(graphdef, params, seqs, starts, mesh)
  for i, (seq, s) in enumerate(zip(seqs, starts, strict=True)):
    lg, _ = _dense(graphdef, params, seq)
    lp = np.asarray(jax.nn.log_softmax(lg[s - 1 : -1], -1))
    tgt = seq[s:]
    want = lp[np.arange(len(tgt)), tgt].sum()
    tol.assert_close(got['logprob'][i], want, tol.REDUCTION, scale=abs(want))
    assert got['tokens'][i] == len(tgt)
    assert got['copy_accuracy'][i] == pytest.approx(
      np.mean(lp.argmax(-1) == tgt), abs=2 / len(tgt)
    )

  # Training path: the gradient of a ring loss equals the dense gradient.
  packed = cp.pack(seqs[1:], 8)

  def ring_loss(p):
    lg, _ = cp.ring_forward_packed(graphdef, p, packed, mesh)
    return (jax.nn.logsumexp(lg, -1) * (packed.layout.segment >= 0)).sum()

  def dense_loss(p):
    lg = nnx.merge(graphdef, p)(seqs[1][None]).logits[0]
    return jax.nn.logsumexp(lg, -1).sum()

  with jax.set_mesh(mesh):  # the ring's outputs are sharded over 'cp'
    got_grad = jax.grad(ring_loss)(params)
  tol.assert_trees_close(got_grad, jax.grad(dense_loss)(params), tol.REDUCTION)


def test_bad_input():
  graphdef, params = _model()
  with pytest.raises(ValueError, match='degree'):
    cp.make_ring_mesh(99)
  packed = cp.pack([[1, 2, 3]], 4)
  with pytest.raises(ValueError, match='packed for degree 4'):
    cp.ring_forward_packed(graphdef, params, packed, cp.make_ring_mesh(8))
  with pytest.raises(ValueError, match='response_starts'):
    cp.ring_token_logprobs(
      graphdef, params, [[1, 2, 3]], [3], cp.make_ring_mesh(2)
    )
