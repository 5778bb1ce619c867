"""Device check: a Qwen2.5-0.5B-shaped random model on an accelerator.

Measures, on the first JAX device and the same device in PyTorch:

* training: AdamW steps of next-token cross-entropy on `[batch, seq_len]`
  random tokens, bfloat16 compute on float32 master weights (JAX:
  `dtype='bfloat16', param_dtype='float32'`, scanned layers, buffers
  donated; PyTorch/transformers: `Qwen2ForCausalLM` in float32 under
  `torch.autocast(bfloat16)`, `torch.optim.AdamW`): tokens/s and model
  FLOPs utilisation (6 N + 12 L H Dh T FLOPs per token over the device's
  peak; the peak comes from `--peak-tflops`, or from a table of known
  devices, else MFU is not printed);
* generation with the KV cache, greedy, `--gen-tokens` new tokens after a
  `--prompt-len` prompt, at batch 1 and 64 (JAX: `common.sampling.Sampler`;
  PyTorch: `transformers` `generate`): tokens/s;

and ends with one line of ratios (JAX over PyTorch). Timings exclude
compilation (one warm-up call each). On CPU, `--tiny` runs the same code at
a toy shape (the test does):

  python -m experiments.benchmarks.device_check            # accelerator
  python -m experiments.benchmarks.device_check --tiny     # CPU smoke
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from common import models
from common import sampling

# Dense bfloat16 peak TFLOP/s by device-kind substring (vendor figures).
_PEAK_TFLOPS = {'H200': 989.0, 'H100': 989.0, 'A100': 312.0, 'L4': 121.0}
_LR = 1e-4


def flops_per_token(config: models.LMConfig, seq_len: int) -> float:
  """Training FLOPs per token: `6 N + 12 L H Dh T` (PaLM appendix B).

  `N` counts the matmul parameters (embedding excluded unless it is also
  the LM head, which it is when tied).
  """
  d, f, L = config.d_model, config.d_ff, config.n_layers
  q = config.n_heads * config.head_dim
  kv = config.n_kv_heads * config.head_dim
  per_layer = d * (q + 2 * kv) + q * d + 3 * d * f
  n = L * per_layer + d * config.vocab_size  # + LM head
  return 6.0 * n + 12.0 * L * q * seq_len


def _median_time(fn, n):
  times = []
  for _ in range(n):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def jax_train(config, batch, seq_len, steps):
  """Tokens/s of the jitted AdamW step."""
  model = models.Transformer(config, rngs=nnx.Rngs(0))
  graphdef, params = models.split(model)
  tx = optax.adamw(_LR, weight_decay=0.01)
  opt_state = tx.init(params)

  def loss_fn(params, tokens):
    logits = models.apply_fn(graphdef)(
      params, tokens[:, :-1], jnp.ones_like(tokens[:, :-1], bool)
    )
    return optax.softmax_cross_entropy_with_integer_labels(
      logits, tokens[:, 1:]
    ).mean()

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, tokens):
    loss, grads = jax.value_and_grad(loss_fn)(params, tokens)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(0)
  tokens = jnp.asarray(
    rng.integers(0, config.vocab_size, (batch, seq_len + 1)), jnp.int32
  )
  state = [params, opt_state]
  losses = []

  def run():
    state[0], state[1], loss = step(state[0], state[1], tokens)
    losses.append(float(loss))  # fetches: the step is finished

  run()  # compile
  t = _median_time(run, steps)
  if not np.isfinite(losses).all():
    raise RuntimeError(f'JAX training losses not finite: {losses}')
  return batch * seq_len / t, losses[0]


def jax_generate(config, batch, prompt_len, new_tokens, steps):
  """Tokens/s of greedy KV-cache generation (all rows run to the end)."""
  model = models.Transformer(config, rngs=nnx.Rngs(1))
  sampler = sampling.Sampler(model, capacity=prompt_len + new_tokens)
  rng = np.random.default_rng(1)
  prompt = rng.integers(0, config.vocab_size, (batch, prompt_len))
  cfg = sampling.GenerationConfig(max_new_tokens=new_tokens, temperature=0.0)

  def run():
    out = sampler.sample(prompt, None, jax.random.key(0), cfg)
    np.asarray(out.tokens)

  run()
  return batch * new_tokens / _median_time(run, steps)


def torch_runs(config, batch, seq_len, prompt_len, new_tokens, steps):
  """`(train tokens/s, {batch: generation tokens/s})` with transformers."""
  import torch  # noqa: PLC0415 (peers extra)
  import transformers  # noqa: PLC0415

  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  sync = torch.cuda.synchronize if device == 'cuda' else lambda: None
  if device == 'cpu':
    torch.set_num_threads(1)  # a shared CPU: spinning OpenMP threads lose
  hf = models.config_to_hf(config.replace(param_dtype='float32'))
  hf_config = transformers.Qwen2Config(
    **{k: v for k, v in hf.items() if k not in ('architectures', 'model_type')}
  )
  torch.manual_seed(0)
  model = transformers.Qwen2ForCausalLM(hf_config).to(device)
  opt = torch.optim.AdamW(model.parameters(), lr=_LR, weight_decay=0.01)
  gen = torch.Generator().manual_seed(0)
  tokens = torch.randint(
    0, config.vocab_size, (batch, seq_len + 1), generator=gen
  ).to(device)

  def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device, dtype=torch.bfloat16):
      logits = model(tokens[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(
      logits.float().reshape(-1, config.vocab_size), tokens[:, 1:].reshape(-1)
    )
    loss.backward()
    opt.step()
    loss.item()
    sync()

  step()
  train_tps = batch * seq_len / _median_time(step, steps)
  model = model.to(torch.bfloat16).eval()
  gen_tps = {}
  for b in (1, 64) if batch > 2 else (1, batch):
    prompt = torch.randint(
      0, config.vocab_size, (b, prompt_len), generator=gen
    ).to(device)

    def generate(prompt=prompt):
      with torch.no_grad():
        model.generate(
          prompt,
          attention_mask=torch.ones_like(prompt),
          max_new_tokens=new_tokens,
          min_new_tokens=new_tokens,
          do_sample=False,
          pad_token_id=0,
        )
      sync()

    generate()
    gen_tps[b] = b * new_tokens / _median_time(generate, steps)
  return train_tps, gen_tps, device


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--preset', default='qwen2.5-0.5b')
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--seq-len', type=int, default=1024)
  parser.add_argument('--prompt-len', type=int, default=128)
  parser.add_argument('--gen-tokens', type=int, default=128)
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--peak-tflops', type=float, default=None)
  parser.add_argument('--no-torch', action='store_true')
  parser.add_argument(
    '--tiny', action='store_true', help='toy shape (CPU smoke test)'
  )
  args = parser.parse_args(argv)
  overrides = dict(dtype='bfloat16', param_dtype='float32', scan_layers=True)
  if args.tiny:
    args.preset, args.batch, args.seq_len = 'tiny', 2, 16
    args.prompt_len, args.gen_tokens, args.steps = 4, 4, 1
    overrides['qkv_bias'] = True  # the Qwen2 architecture, as the real one
  config = models.get_preset(args.preset, **overrides)
  device = jax.devices()[0]
  kind = getattr(device, 'device_kind', device.platform)
  peak = args.peak_tflops
  if peak is None:
    peak = next((v for k, v in _PEAK_TFLOPS.items() if k in kind), None)

  train_tps, loss0 = jax_train(config, args.batch, args.seq_len, args.steps)
  fpt = flops_per_token(config, args.seq_len)
  mfu = None if peak is None else train_tps * fpt / (peak * 1e12)
  gen_batches = (1, 64) if args.batch > 2 else (1, args.batch)
  gen_tps = {
    b: jax_generate(
      config, b, args.prompt_len, args.gen_tokens, max(args.steps, 1)
    )
    for b in gen_batches
  }
  shape = (
    f'{args.preset} bf16 (f32 master), train {args.batch}x{args.seq_len}, '
    f'generate {args.prompt_len}+{args.gen_tokens}, {kind}'
  )
  mfu_txt = 'n/a (unknown peak)' if mfu is None else f'{100 * mfu:.1f}%'
  print(
    f'JAX: train {train_tps:.0f} tokens/s (loss {loss0:.3f}), MFU {mfu_txt}; '
    + ', '.join(f'generate b{b} {v:.0f} tokens/s' for b, v in gen_tps.items())
  )
  result = {'train_tps': train_tps, 'mfu': mfu, 'gen_tps': gen_tps}
  if args.no_torch:
    print(f'device_check: train_tps={train_tps:.0f} ({shape}; no PyTorch)')
    return result
  t_train, t_gen, t_device = torch_runs(
    config,
    args.batch,
    args.seq_len,
    args.prompt_len,
    args.gen_tokens,
    args.steps,
  )
  print(
    f'PyTorch ({t_device}): train {t_train:.0f} tokens/s; '
    + ', '.join(f'generate b{b} {v:.0f} tokens/s' for b, v in t_gen.items())
  )
  ratios = {'train': train_tps / t_train}
  ratios.update({f'gen_b{b}': gen_tps[b] / t_gen[b] for b in gen_batches})
  result['ratios'] = ratios
  print(
    'device_check: '
    + ' '.join(f'{k}={v:.2f}x' for k, v in ratios.items())
    + f' (JAX tokens/s / PyTorch tokens/s; {shape}; JAX MFU {mfu_txt})'
  )
  return result


if __name__ == '__main__':
  main()
