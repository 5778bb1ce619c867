"""Parity of `common.models` with Hugging Face `transformers` (the peer).

Tiny random Qwen2 and Llama models are built by `transformers` itself
(GQA, tied and untied heads, qkv bias, Llama-3 RoPE scaling), written with
`save_pretrained` (one file and shards) and loaded with `common.models.hf`;
and the reverse: `save_hf` then `AutoModelForCausalLM.from_pretrained`.
Compared: logits on a left-padded batch (float32, `REDUCTION` tolerance,
i.e. 1e-4 relative to the logits' magnitude), greedy generation token for
token against `generate` (with and without either side's KV cache, and
stopping on a stop sequence), the sampling distribution (temperature,
top-k, top-p) against transformers' logits warpers, and a `tokenizers`
tokenizer.json read by both libraries.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers
import torch
import transformers
from flax import nnx

from common import models
from common import sampling
from common.sampling import filters
from tests import tolerances as tol

_V = 97
_INIT_STD = 0.15  # peaked next-token distributions: greedy has clear winners.

_CASES = {
  'qwen2_tied': dict(
    cls=transformers.Qwen2Config,
    kw=dict(tie_word_embeddings=True),
  ),
  'qwen2_untied': dict(
    cls=transformers.Qwen2Config,
    kw=dict(tie_word_embeddings=False),
  ),
  'llama3_untied': dict(
    cls=transformers.LlamaConfig,
    kw=dict(
      tie_word_embeddings=False,
      rope_scaling={
        'rope_type': 'llama3',
        'factor': 8.0,
        'low_freq_factor': 1.0,
        'high_freq_factor': 4.0,
        'original_max_position_embeddings': 8,
      },
      rope_theta=500.0,
    ),
  ),
  'llama_tied': dict(
    cls=transformers.LlamaConfig,
    kw=dict(tie_word_embeddings=True, head_dim=16),
  ),
}


def _hf_model(name: str, seed: int = 0):
  case = _CASES[name]
  cfg = case['cls'](
    vocab_size=_V,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    rms_norm_eps=1e-6,
    initializer_range=_INIT_STD,
    pad_token_id=0,
    bos_token_id=None,
    eos_token_id=None,
    **case['kw'],
  )
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(
    cfg, dtype=torch.float32
  )
  with torch.no_grad():  # non-trivial biases and norm gains
    for pname, p in model.named_parameters():
      if pname.endswith('bias') or 'norm' in pname:
        p.add_(0.1 * torch.randn_like(p))
  return model.eval()


def _batch(seed: int = 0):
  """Left-padded `[3, 9]` batch: lengths 9, 6, 3 (pad id 0)."""
  rng = np.random.default_rng(seed)
  lengths = (9, 6, 3)
  t = max(lengths)
  tokens = np.zeros((len(lengths), t), np.int64)
  mask = np.zeros((len(lengths), t), bool)
  for i, n in enumerate(lengths):
    tokens[i, t - n :] = rng.integers(1, _V, n)
    mask[i, t - n :] = True
  return tokens, mask


def _hf_logits(model, tokens, mask):
  pos = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
  with torch.no_grad():
    out = model(
      input_ids=torch.from_numpy(tokens),
      attention_mask=torch.from_numpy(mask.astype(np.int64)),
      position_ids=torch.from_numpy(pos),
    )
  return out.logits.numpy()


def _jax_logits(model, tokens, mask):
  graphdef, params = models.split(model)
  fn = jax.jit(models.apply_fn(graphdef))
  return np.asarray(fn(params, jnp.asarray(tokens, jnp.int32), mask))


def _cases(*fast):
  """All cases; those not in `fast` are marked slow (generation compiles
  a decoding loop per model, ~5 s each on the shared CPU)."""
  return [
    pytest.param(n, marks=() if n in fast else pytest.mark.slow)
    for n in sorted(_CASES)
  ]


@pytest.fixture(scope='module')
def pair(request, tmp_path_factory):
  """(name, transformers model, our model loaded from its directory)."""
  name = request.param
  hf_model = _hf_model(name)
  directory = tmp_path_factory.mktemp(name)
  sharded = name in ('qwen2_untied', 'llama3_untied')
  hf_model.save_pretrained(
    directory, max_shard_size='20KB' if sharded else '1GB'
  )
  index = (directory / 'model.safetensors.index.json').exists()
  assert index == sharded  # both layouts are exercised
  config, model = models.load_hf(str(directory))
  return name, hf_model, config, model


@pytest.mark.parametrize('pair', _cases(*_CASES), indirect=True)
def test_config_read_from_transformers_files(pair):
  name, hf_model, config, _ = pair
  c = hf_model.config
  assert config.tie_embeddings == c.tie_word_embeddings
  assert config.qkv_bias == name.startswith('qwen2')
  assert (config.n_heads, config.n_kv_heads) == (4, 2)
  assert config.head_dim == getattr(c, 'head_dim', None) or 32 // 4
  theta = c.rope_parameters['rope_theta']
  assert config.rope_theta == theta
  if name == 'llama3_untied':
    assert config.rope_scaling == models.RopeScaling(8.0, 1.0, 4.0, 8)
  else:
    assert config.rope_scaling is None


@pytest.mark.parametrize('pair', _cases(*_CASES), indirect=True)
def test_left_padded_logits_equal_transformers(pair):
  _, hf_model, _, model = pair
  tokens, mask = _batch()
  want = _hf_logits(hf_model, tokens, mask)
  got = _jax_logits(model, tokens, mask)
  # Only real tokens have defined outputs (padding is never attended).
  tol.assert_close(got[mask], want[mask], tol.REDUCTION)
  # A row alone (no padding) gives the same logits as in the batch.
  alone = _hf_logits(hf_model, tokens[2:, -3:], mask[2:, -3:])
  tol.assert_close(got[2, -3:], alone[0], tol.REDUCTION)


def _hf_greedy(hf_model, tokens, mask, n, use_cache, stop=None):
  kw = {}
  if stop is not None:
    kw['stopping_criteria'] = transformers.StoppingCriteriaList(
      [_StopOnSequence(stop)]
    )
  with torch.no_grad():
    out = hf_model.generate(
      input_ids=torch.from_numpy(tokens),
      attention_mask=torch.from_numpy(mask.astype(np.int64)),
      max_new_tokens=n,
      do_sample=False,
      use_cache=use_cache,
      pad_token_id=0,
      eos_token_id=None,
      **kw,
    )
  return out[:, tokens.shape[1] :].numpy()


class _StopOnSequence(transformers.StoppingCriteria):
  """Stops a row once its last tokens equal `seq`."""

  def __init__(self, seq):
    self.seq = torch.tensor(seq)

  def __call__(self, input_ids, scores, **kwargs):
    k = len(self.seq)
    return (input_ids[:, -k:] == self.seq).all(dim=1)


def _jax_greedy_no_cache(model, tokens, mask, n):
  """Greedy decoding by full recompute (no KV cache), one compiled shape.

  The batch is laid out at its final width `T + n`; not-yet-generated
  slots are masked (and causally after every query that is read).
  """
  graphdef, params = models.split(model)
  fn = jax.jit(models.apply_fn(graphdef))
  b, t = tokens.shape
  toks = np.concatenate([tokens, np.zeros((b, n), tokens.dtype)], 1)
  m = np.concatenate([mask, np.zeros((b, n), bool)], 1)
  for i in range(n):
    logits = fn(params, jnp.asarray(toks, jnp.int32), jnp.asarray(m))
    toks[:, t + i] = np.asarray(jnp.argmax(logits[:, t + i - 1], axis=-1))
    m[:, t + i] = True
  return toks[:, t:]


@pytest.mark.parametrize('pair', _cases('llama3_untied'), indirect=True)
def test_greedy_generation_equals_transformers_generate(pair):
  name, hf_model, _, model = pair
  tokens, mask = _batch(1)
  n = 12
  want = _hf_greedy(hf_model, tokens, mask, n, use_cache=True)
  # transformers' own cached and uncached paths agree.
  np.testing.assert_array_equal(
    _hf_greedy(hf_model, tokens, mask, n, use_cache=False), want
  )
  sampler = sampling.Sampler(model, capacity=tokens.shape[1] + n)
  cfg = sampling.GenerationConfig(max_new_tokens=n, temperature=0.0)
  out = sampler.sample(tokens, mask, jax.random.key(0), cfg)
  # Token ids are integers: exact equality.
  np.testing.assert_array_equal(np.asarray(out.tokens), want, err_msg=name)
  np.testing.assert_array_equal(
    _jax_greedy_no_cache(model, tokens, mask, n), want
  )
  # The reported log-probs are transformers' log-softmax at those tokens.
  full = np.concatenate([tokens, want], axis=1)
  full_mask = np.concatenate([mask, np.ones_like(want, bool)], axis=1)
  logits = _hf_logits(hf_model, full, full_mask)[:, tokens.shape[1] - 1 : -1]
  logp = torch.log_softmax(torch.from_numpy(logits), -1).numpy()
  want_logp = np.take_along_axis(logp, want[..., None], -1)[..., 0]
  tol.assert_close(
    out.logprobs, want_logp, tol.REDUCTION, scale=tol.magnitude(logits)
  )


@pytest.mark.parametrize('pair', _cases('llama3_untied'), indirect=True)
def test_greedy_stop_sequence_equals_transformers(pair):
  _, hf_model, _, model = pair
  tokens, mask = _batch(2)
  n = 10
  free = _hf_greedy(hf_model, tokens, mask, n, use_cache=True)
  stop = tuple(int(t) for t in free[0, 3:5])  # row 0 stops after 5 tokens
  want = _hf_greedy(hf_model, tokens, mask, n, use_cache=True, stop=stop)
  sampler = sampling.Sampler(model, capacity=tokens.shape[1] + n)
  cfg = sampling.GenerationConfig(
    max_new_tokens=n, temperature=0.0, stop_sequences=(stop,), pad_id=0
  )
  out = sampler.sample(tokens, mask, jax.random.key(0), cfg)
  lengths = np.asarray(out.lengths)
  first = np.asarray(
    [
      next(
        (i + 2 for i in range(n - 1) if tuple(free[r, i : i + 2]) == stop),
        n,
      )
      for r in range(len(free))
    ]
  )
  assert lengths[0] <= 5
  np.testing.assert_array_equal(lengths, first)
  # transformers keeps decoding a stopped row (without an EOS id it pads
  # nothing) until every row stopped; ours stops each row at its match.
  assert want.shape[1] == lengths.max()
  for r, n_r in enumerate(lengths):
    np.testing.assert_array_equal(
      np.asarray(out.tokens)[r, :n_r], want[r, :n_r]
    )
  stopped = lengths < n
  np.testing.assert_array_equal(
    np.asarray(out.finish_reason)[stopped], sampling.FINISH_STOP
  )


@pytest.mark.parametrize(
  'temperature,top_k,top_p', [(0.7, None, 1.0), (1.3, 5, 1.0), (1.0, 0, 0.8)]
)
def test_sampling_distribution_equals_transformers_warpers(
  temperature, top_k, top_p
):
  logits = np.random.default_rng(0).normal(0, 3, (4, _V)).astype(np.float32)
  procs = [transformers.TemperatureLogitsWarper(temperature)]
  if top_k:
    procs.append(transformers.TopKLogitsWarper(top_k))
  if top_p < 1:
    procs.append(transformers.TopPLogitsWarper(top_p))
  warped = transformers.LogitsProcessorList(procs)(
    None, torch.from_numpy(logits)
  )
  want = torch.softmax(warped, -1).numpy()
  got = jax.nn.softmax(
    filters.sampling_logits(jnp.asarray(logits), temperature, top_k, top_p)
  )
  # The support (which tokens may be drawn) is identical ...
  np.testing.assert_array_equal(np.asarray(got) > 0, want > 0)
  # ... and so are the probabilities on it.
  tol.assert_close(got, want, tol.FEW_OPS)


@pytest.mark.parametrize('pair', _cases('qwen2_tied'), indirect=True)
def test_sampled_tokens_lie_in_transformers_nucleus(pair):
  """Sampling with top-p and a stop sequence: every sampled token has
  non-zero probability under transformers' warped distribution at its
  context, logprobs are transformers' raw log-softmax, rows stop at the
  stop sequence."""
  _, hf_model, _, model = pair
  tokens, mask = _batch(3)
  n, top_p = 10, 0.9
  sampler = sampling.Sampler(model, capacity=tokens.shape[1] + n)
  plain = sampling.GenerationConfig(max_new_tokens=n, top_p=top_p)
  free = np.asarray(
    sampler.sample(tokens, mask, jax.random.key(5), plain).tokens
  )
  stop = tuple(int(t) for t in free[1, 2:4])
  cfg = sampling.GenerationConfig(
    max_new_tokens=n, top_p=top_p, stop_sequences=(stop,)
  )
  out = sampler.sample(tokens, mask, jax.random.key(5), cfg)
  toks, gen_mask = np.asarray(out.tokens), np.asarray(out.mask)
  assert 2 < int(out.lengths[1]) <= 4  # same key: same draws, stopped
  assert tuple(toks[1, out.lengths[1] - 2 : out.lengths[1]]) == stop
  full = np.concatenate([tokens, np.where(gen_mask, toks, 0)], axis=1)
  full_mask = np.concatenate([mask, gen_mask], axis=1)
  logits = _hf_logits(hf_model, full, full_mask)[:, tokens.shape[1] - 1 : -1]
  warp = transformers.TopPLogitsWarper(top_p)
  for r in range(len(toks)):
    for i in np.nonzero(gen_mask[r])[0]:
      probs = torch.softmax(
        warp(None, torch.from_numpy(logits[r, i : i + 1])), -1
      )
      assert probs[0, toks[r, i]] > 0, (r, i)
  logp = torch.log_softmax(torch.from_numpy(logits), -1).numpy()
  want = np.take_along_axis(logp, toks[..., None], -1)[..., 0]
  tol.assert_close(
    np.asarray(out.logprobs)[gen_mask],
    want[gen_mask],
    tol.REDUCTION,
    scale=tol.magnitude(logits),
  )


@pytest.mark.parametrize(
  'architecture', ['Qwen2ForCausalLM', 'LlamaForCausalLM']
)
def test_save_hf_loads_in_transformers(tmp_path, architecture):
  qwen = architecture == 'Qwen2ForCausalLM'
  config = models.get_preset(
    'tiny',
    vocab_size=_V,
    d_model=32,
    n_heads=4,
    n_kv_heads=2,
    d_ff=64,
    max_seq_len=128,
    qkv_bias=qwen,
    tie_embeddings=qwen,
    rope_theta=500.0,
    rope_scaling=None if qwen else models.RopeScaling(8.0, 1.0, 4.0, 8),
  )
  model = models.Transformer(config, rngs=nnx.Rngs(3))
  # Non-zero biases and gains, so that dropping one would show.
  _, state = nnx.split(model)
  leaves, treedef = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  leaves = [
    x + 0.1 * jax.random.normal(k, x.shape)
    for x, k in zip(leaves, keys, strict=True)
  ]
  nnx.update(model, jax.tree.unflatten(treedef, leaves))
  models.save_hf(
    model,
    config,
    str(tmp_path),
    architecture=architecture,
    max_shard_bytes=None if qwen else 20_000,
  )
  hf_model = transformers.AutoModelForCausalLM.from_pretrained(
    str(tmp_path), dtype=torch.float32
  ).eval()
  assert type(hf_model).__name__ == architecture
  if not qwen:
    assert hf_model.config.rope_parameters['rope_type'] == 'llama3'
  tokens, mask = _batch(4)
  want = _hf_logits(hf_model, tokens, mask)
  got = _jax_logits(model, tokens, mask)
  tol.assert_close(got[mask], want[mask], tol.REDUCTION)


def test_tokenizer_json_encodes_identically(tmp_path):
  tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=None))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(
    add_prefix_space=False
  )
  tok.decoder = tokenizers.decoders.ByteLevel()
  trainer = tokenizers.trainers.BpeTrainer(
    vocab_size=300,
    special_tokens=['<|endoftext|>', '<search>', '</search>'],
    initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
  )
  corpus = [
    'The capital of France is Paris.',
    'Question: who wrote Hamlet? <search>Hamlet author</search>',
    'def add(a, b):\n    return a + b  # ünïcödé ✓',
  ] * 20
  tok.train_from_iterator(corpus, trainer)
  tok.save(str(tmp_path / 'tokenizer.json'))
  ours = models.load_hf_tokenizer(str(tmp_path))
  theirs = transformers.PreTrainedTokenizerFast(
    tokenizer_file=str(tmp_path / 'tokenizer.json')
  )
  texts = corpus[:3] + [
    'Unseen words: zebra quantum 42, <search>x</search><|endoftext|>',
    '  leading spaces\tand tabs\n\n',
    '',
  ]
  for text in texts:
    ids = ours.encode(text).ids
    assert ids == theirs.encode(text, add_special_tokens=False), text
    assert ours.decode(ids, skip_special_tokens=False) == theirs.decode(ids)
  assert ours.get_vocab_size() == len(theirs)
