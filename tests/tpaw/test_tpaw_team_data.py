"""TPAW team (members, store, precomputed log-probs), lanes and data."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import tpaw
from common import models
from tests import tolerances as tol
from tpaw import lanes
from tpaw import team


def _model(seed=0, vocab=24):
  cfg = models.get_preset(
    'tiny', vocab_size=vocab, d_model=16, n_layers=1, d_ff=32, n_heads=2,
    n_kv_heads=1, max_seq_len=16,
  )  # fmt: skip
  return models.split(models.Transformer(cfg, rngs=nnx.Rngs(seed)))


def _opponent(m=6, p=4, r=5, seed=0):
  rng = np.random.default_rng(seed)
  lens = rng.integers(1, p + 1, m)
  pmask = np.arange(p)[None] >= p - lens[:, None]  # left-padded
  tl = rng.integers(1, r + 1, m)
  gl = rng.integers(1, r + 1, m)
  return {
    'prompt': rng.integers(3, 24, (m, p)).astype(np.int32) * pmask,
    'prompt_mask': pmask,
    'target': rng.integers(3, 24, (m, r)).astype(np.int32),
    'target_mask': np.arange(r)[None] < tl[:, None],
    'generated': rng.integers(3, 24, (m, r)).astype(np.int32),
    'generated_mask': np.arange(r)[None] < gl[:, None],
  }


def test_team_and_opponent_iterations():
  assert tpaw.team_iterations(0, 3) == [0]
  assert tpaw.team_iterations(1, 3) == [1, 0]
  assert tpaw.team_iterations(4, 3) == [4, 3, 2]
  assert tpaw.team_iterations(4, 1) == [4]
  assert tpaw.opponent_iterations(3, 3) == [3, 2, 1]
  with pytest.raises(ValueError, match='n_max must be >= 1'):
    tpaw.team_iterations(2, 0)
  with pytest.raises(ValueError, match='opponent_window must be >= 1'):
    tpaw.opponent_iterations(2, 0)


def test_precomputed_team_logprobs_match_recomputed_forwards():
  graphdef, p0 = _model(0)
  _, p1 = _model(1)
  opp = _opponent()
  got = tpaw.team_logprobs(graphdef, [p0, p1], opp, n_max=3, batch_size=4)
  np.testing.assert_array_equal(got['team_mask'][0], [True, True, False])
  np.testing.assert_array_equal(got['team_target_logps'][:, 2], 0.0)
  want_t, want_g = jax.jit(
    lambda members, b: team.recompute_team_logps(graphdef, members, b)
  )([p0, p1], opp)
  # Chunked (4 rows, last chunk padded) vs one batch of 6: matmul order.
  tol.assert_close(got['team_target_logps'][:, :2], want_t, tol.REDUCTION)
  tol.assert_close(got['team_generated_logps'][:, :2], want_g, tol.REDUCTION)
  # And against the model's own per-token log-probs of one row.
  batch = tpaw.sequence_batch(
    opp['prompt'][:1], opp['prompt_mask'][:1], opp['target'][:1],
    opp['target_mask'][:1],
  )  # fmt: skip
  lp = jax.jit(models.token_logprobs, static_argnums=0)(graphdef, p0, batch)
  want = float(np.sum(np.where(batch['loss_mask'], lp, 0.0)))
  tol.assert_close(got['team_target_logps'][0, 0], want, tol.REDUCTION)


def test_team_store_round_trip(tmp_path):
  _, params = _model(0)
  entry = {
    'params': team.to_host(params),
    'generated': np.arange(10, dtype=np.int32).reshape(2, 5),
    'generated_mask': np.ones((2, 5), bool),
  }
  store = tpaw.TeamStore(tmp_path / 'team', max_to_keep=2)
  for t in range(3):
    store.save(t, {**entry, 'generated': entry['generated'] + t})
  assert store.iterations() == [1, 2]  # max_to_keep
  back = store.restore(2, entry)
  np.testing.assert_array_equal(back['generated'], entry['generated'] + 2)
  for a, b in zip(
    jax.tree.leaves(back['params']),
    jax.tree.leaves(entry['params']),
    strict=True,
  ):
    np.testing.assert_array_equal(a, b)  # orbax stores the bits
  with pytest.raises(FileNotFoundError, match='iteration 0 is not in'):
    store.restore(0, entry)
  store.close()


def test_lane_step_equals_single_steps():
  graphdef, p0 = _model(0)
  _, p1 = _model(1)
  apply = models.apply_fn(graphdef)
  tx = optax.adam(1e-2)

  def loss_fn(params, batch, hyper):
    logits = apply(params, batch['tokens'], batch['attention_mask'])
    return hyper['w'] * jnp.mean(logits**2), {}

  rng = np.random.default_rng(0)
  b = [
    {
      'tokens': rng.integers(0, 24, (4, 6)).astype(np.int32),
      'attention_mask': np.ones((4, 6), bool),
    }
    for _ in range(2)
  ]
  hyper = [{'w': jnp.float32(1.0)}, {'w': jnp.float32(0.5)}]
  state = lanes.create_state([p0, p1], tx, 0, hyper)
  step = lanes.make_lane_step(loss_fn, tx, ['a', 'b'])
  new, metrics = jax.jit(step)(state, lanes.stack_batches(b))
  assert set(metrics) == {'a/loss', 'b/loss', 'a/grad_norm', 'b/grad_norm'}

  @jax.jit
  def single(params, batch, hyper):
    (loss, _), g = jax.value_and_grad(loss_fn, has_aux=True)(
      params, batch, hyper
    )
    upd, _ = tx.update(g, tx.init(params), params)
    return optax.apply_updates(params, upd), loss

  for i, params in enumerate([p0, p1]):
    want, loss = single(params, b[i], hyper[i])
    tol.assert_trees_close(lanes.unstack(new.params, i), want, tol.REDUCTION)
    tol.assert_close(metrics[f'{"ab"[i]}/loss'], loss, tol.REDUCTION)
  with pytest.raises(ValueError, match='distinct'):
    lanes.make_lane_step(loss_fn, tx, ['a', 'a'])


# --------------------------------------------------------------------------
# Data.


def _write(path, rows):
  path.write_text(
    '\n'.join(r if isinstance(r, str) else json.dumps(r) for r in rows) + '\n'
  )
  return path


def test_chat_jsonl_last_assistant_turn_is_the_target(tmp_path):
  path = _write(
    tmp_path / 'chat.jsonl',
    [
      {
        'messages': [
          {'role': 'system', 'content': 'be brief'},
          {'role': 'user', 'content': 'hi'},
          {'role': 'assistant', 'content': 'hello'},
          {'role': 'user', 'content': 'sum 2 2'},
          {'role': 'assistant', 'content': '4'},
        ]
      },
      '',
      {
        'messages': [
          {'role': 'user', 'content': 'q'},
          {'role': 'assistant', 'content': 'a'},
        ]
      },
    ],
  )
  recs = tpaw.read_chat_jsonl(path)
  assert [r.response for r in recs] == ['4', 'a']
  assert recs[0].prompt == (
    'system: be brief\nuser: hi\nassistant: hello\nuser: sum 2 2\nassistant:'
  )
  assert recs[1].source == f'{path}:3'


def test_prompt_completion_jsonl_plain_and_conversational(tmp_path):
  path = _write(
    tmp_path / 'pc.jsonl',
    [
      {'prompt': 'What is 2 + 2?', 'completion': ' 4'},
      {
        'prompt': [{'role': 'user', 'content': 'x'}],
        'completion': [{'role': 'assistant', 'content': 'y'}],
      },
    ],
  )
  recs = tpaw.read_prompt_completion_jsonl(path)
  assert [(r.prompt, r.response) for r in recs] == [
    ('What is 2 + 2?', ' 4'),
    ('user: x\nassistant:', 'y'),
  ]


@pytest.mark.parametrize(
  'reader, rows, match',
  [
    ('chat', [], r'chat.jsonl: the SFT file holds no records \(empty\)'),
    ('chat', ['{"messages": '], r'chat.jsonl:1: not valid JSON'),
    ('chat', [{'msgs': []}], r'chat.jsonl:1: missing field "messages"'),
    (
      'chat',
      [{'messages': [{'role': 'user', 'content': 'q'}]}],
      r'chat.jsonl:1: field "messages" has no assistant turn',
    ),
    (
      'chat',
      [
        {
          'messages': [
            {'role': 'user', 'content': 'q'},
            {'role': 'assistant', 'content': 'a'},
          ]
        },
        {'messages': [{'role': 'bot', 'content': 'q'}]},
      ],
      r"chat.jsonl:2: field messages\[0\].role is 'bot'; allowed",
    ),  # fmt: skip
    (
      'pc',
      [{'prompt': 'q'}],
      r"chat.jsonl:1: missing field 'completion'",
    ),
    (
      'pc',
      [{'prompt': '', 'completion': 'a'}],
      r"chat.jsonl:1: field 'prompt' must be a non-empty string",
    ),
  ],
)
def test_bad_files_name_file_line_and_field(tmp_path, reader, rows, match):
  path = tmp_path / 'chat.jsonl'
  if rows:
    _write(path, rows)
  else:
    path.write_text('\n')  # blank lines only
  fn = {
    'chat': tpaw.read_chat_jsonl,
    'pc': tpaw.read_prompt_completion_jsonl,
  }[reader]
  with pytest.raises(tpaw.DataFormatError, match=match):
    fn(path)


def test_encode_pairs_layout_and_errors():
  words = {w: i + 3 for i, w in enumerate('a b c d e f'.split())}

  def encode(text):
    return [words[w] for w in text.split()]

  recs = [
    tpaw.SFTRecord('a b', 'c', 'f.jsonl:1'),
    tpaw.SFTRecord('d', 'e f', 's'),
  ]
  d = tpaw.encode_pairs(encode, recs, 3, 3, eos_id=2, pad_id=0, context=6)
  np.testing.assert_array_equal(d.prompt, [[0, 3, 4], [0, 0, 6]])  # left pad
  np.testing.assert_array_equal(d.target, [[5, 2, 0], [7, 8, 2]])  # + EOS
  np.testing.assert_array_equal(d.target_mask, [[1, 1, 0], [1, 1, 1]])
  with pytest.raises(ValueError, match=r'f.jsonl:1: the prompt has 2 tokens, '
                     r'more than data.prompt_len=1'):  # fmt: skip
    tpaw.encode_pairs(encode, recs, 1, 3, eos_id=2, context=6)
  with pytest.raises(ValueError, match='exceeds the model context'):
    tpaw.encode_pairs(encode, recs, 3, 3, eos_id=2, context=5)
  with pytest.raises(ValueError, match='data.response_len=2'):
    tpaw.encode_pairs(encode, recs, 3, 2, eos_id=2)
  with pytest.raises(ValueError, match='no SFT records'):
    tpaw.encode_pairs(encode, [], 3, 3, eos_id=2)
