"""Benchmark: LM training-step throughput, JAX/NNX vs PyTorch (CPU).

The same decoder (RMSNorm, rotate-half RoPE, GQA, SwiGLU, tied head) is
written here in PyTorch with HF tensor names, initialised with the NNX
model's weights (`common.models.to_hf_tensors`), and trained on the same
batch with AdamW (same hyperparameters) and next-token cross-entropy:

* JAX: `nnx.split` once, a jitted `step(params, opt_state, tokens)` with
  `optax.adamw`, buffers donated;
* PyTorch 2.13 (eager, `F.scaled_dot_product_attention`),
  `torch.optim.AdamW`.

The loss at step 0 must agree (rtol 1e-4), and the loss after the first
update is printed for both. Throughput is tokens/s over `--steps` timed
steps after warm-up (compilation excluded), one JAX and one PyTorch step
per round, medians. By default both run single-threaded (`--threads`; the
process is pinned to that many CPUs, since XLA:CPU sizes its thread pool
from the CPUs it may use), a per-core comparison that the shared machine's
load disturbs least. Run:

  python -m experiments.benchmarks.lm_train_vs_torch [--smoke]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from common import models
from common.models import transformer

_LR, _B1, _B2, _EPS, _WD = 1e-3, 0.9, 0.999, 1e-8, 0.01


def _torch_model(config):
  """The same architecture in PyTorch; state_dict keys are HF names."""
  import torch  # noqa: PLC0415 (bench extra)
  import torch.nn.functional as F  # noqa: N812, PLC0415

  nn = torch.nn
  inv = torch.from_numpy(transformer.rope_inv_freq(config))
  h, hkv, dh = config.n_heads, config.n_kv_heads, config.head_dim

  class RMSNorm(nn.Module):
    def __init__(self):
      super().__init__()
      self.weight = nn.Parameter(torch.ones(config.d_model))

    def forward(self, x):
      var = x.pow(2).mean(-1, keepdim=True)
      return x * torch.rsqrt(var + config.rms_norm_eps) * self.weight

  def rope(x, cos, sin):  # x [B, heads, T, Dh]
    x1, x2 = x[..., : dh // 2], x[..., dh // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin

  class Attention(nn.Module):
    def __init__(self):
      super().__init__()
      d, bias = config.d_model, config.qkv_bias
      self.q_proj = nn.Linear(d, h * dh, bias=bias)
      self.k_proj = nn.Linear(d, hkv * dh, bias=bias)
      self.v_proj = nn.Linear(d, hkv * dh, bias=bias)
      self.o_proj = nn.Linear(h * dh, d, bias=False)

    def forward(self, x, cos, sin):
      b, t, _ = x.shape
      q = self.q_proj(x).view(b, t, h, dh).transpose(1, 2)
      k = self.k_proj(x).view(b, t, hkv, dh).transpose(1, 2)
      v = self.v_proj(x).view(b, t, hkv, dh).transpose(1, 2)
      q, k = rope(q, cos, sin), rope(k, cos, sin)
      k = k.repeat_interleave(h // hkv, dim=1)
      v = v.repeat_interleave(h // hkv, dim=1)
      o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
      return self.o_proj(o.transpose(1, 2).reshape(b, t, h * dh))

  class MLP(nn.Module):
    def __init__(self):
      super().__init__()
      d, f = config.d_model, config.d_ff
      self.gate_proj = nn.Linear(d, f, bias=False)
      self.up_proj = nn.Linear(d, f, bias=False)
      self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
      return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

  class Layer(nn.Module):
    def __init__(self):
      super().__init__()
      self.input_layernorm = RMSNorm()
      self.self_attn = Attention()
      self.post_attention_layernorm = RMSNorm()
      self.mlp = MLP()

    def forward(self, x, cos, sin):
      x = x + self.self_attn(self.input_layernorm(x), cos, sin)
      return x + self.mlp(self.post_attention_layernorm(x))

  class Body(nn.Module):
    def __init__(self):
      super().__init__()
      self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
      self.layers = nn.ModuleList(Layer() for _ in range(config.n_layers))
      self.norm = RMSNorm()

  class LM(nn.Module):
    def __init__(self):
      super().__init__()
      self.model = Body()
      if not config.tie_embeddings:
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)

    def forward(self, tokens):
      t = tokens.shape[1]
      ang = torch.outer(torch.arange(t, dtype=torch.float32), inv)
      ang = torch.cat([ang, ang], -1)
      cos, sin = ang.cos(), ang.sin()
      x = self.model.embed_tokens(tokens)
      for layer in self.model.layers:
        x = layer(x, cos, sin)
      x = self.model.norm(x)
      head = (
        self.model.embed_tokens.weight
        if config.tie_embeddings
        else self.lm_head.weight
      )
      return x @ head.T

  return LM()


def _jax_step(graphdef):
  tx = optax.adamw(_LR, b1=_B1, b2=_B2, eps=_EPS, weight_decay=_WD)

  def loss_fn(params, tokens):
    logits = nnx.merge(graphdef, params)(tokens[:, :-1]).logits
    return optax.softmax_cross_entropy_with_integer_labels(
      logits, tokens[:, 1:]
    ).mean()

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, tokens):
    loss, grads = jax.value_and_grad(loss_fn)(params, tokens)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return tx, step


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--preset', default='small')
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--seq-len', type=int, default=128)
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument(
    '--threads',
    type=int,
    default=1,
    help='CPU threads for both frameworks (0: library defaults). One '
    "thread by default: on a shared, oversubscribed machine PyTorch's "
    'OpenMP threads spin and lose up to 10x, which would measure the '
    'load rather than the frameworks.',
  )
  parser.add_argument(
    '--smoke', action='store_true', help='minimal sizes (tests)'
  )
  args = parser.parse_args(argv)
  if args.smoke:
    args.preset, args.batch, args.seq_len, args.steps = 'tiny', 2, 16, 2

  import torch  # noqa: PLC0415 (bench extra: pip install torch==2.13.0)
  import torch.nn.functional as F  # noqa: N812, PLC0415

  if args.threads:
    torch.set_num_threads(args.threads)
    # XLA:CPU sizes its intra-op pool (which runs independent thunks
    # concurrently even with Eigen's multi-threading off) from the CPUs this
    # process may use: without pinning, a "one-thread" JAX step spent 1.5
    # CPU-seconds per wall second on 2 cores. Pin the process to that many
    # CPUs before the backend starts.
    if hasattr(os, 'sched_setaffinity'):
      cpus = sorted(os.sched_getaffinity(0))
      os.sched_setaffinity(0, cpus[-args.threads :])
    # XLA reads its flags when the CPU backend starts (first computation);
    # under a test runner that already started it, these have no effect.
    # (XLA:CPU has no thread-count flag; with Eigen's pool off its dots and
    # fusions run on the calling thread.)
    os.environ['XLA_FLAGS'] = (
      os.environ.get('XLA_FLAGS', '') + ' --xla_cpu_multi_thread_eigen=false'
    )
  config = models.get_preset(args.preset)
  model = models.Transformer(config, rngs=nnx.Rngs(0))
  b, t = args.batch, args.seq_len + 1
  data = np.random.default_rng(0).integers(0, config.vocab_size, (b, t))
  tokens = jnp.asarray(data, jnp.int32)

  # PyTorch copy with identical initial weights.
  tmodel = _torch_model(config)
  tensors = models.to_hf_tensors(model, config)
  tmodel.load_state_dict(
    {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, strict=True
  )
  topt = torch.optim.AdamW(
    tmodel.parameters(), lr=_LR, betas=(_B1, _B2), eps=_EPS, weight_decay=_WD
  )
  ttokens = torch.from_numpy(data).long()

  def torch_step():
    topt.zero_grad(set_to_none=True)
    logits = tmodel(ttokens[:, :-1])
    loss = F.cross_entropy(
      logits.reshape(-1, config.vocab_size), ttokens[:, 1:].reshape(-1)
    )
    loss.backward()
    topt.step()
    return loss.item()

  graphdef, params = nnx.split(model)
  tx, step = _jax_step(graphdef)
  opt_state = tx.init(params)

  jax_losses, torch_losses = [], []
  for _ in range(2):  # step 0 and 1 (also the warm-up / compilation)
    params, opt_state, loss = step(params, opt_state, tokens)
    jax_losses.append(float(loss))
    torch_losses.append(torch_step())
  if not np.isclose(jax_losses[0], torch_losses[0], rtol=1e-4):
    raise RuntimeError(
      f'Step-0 losses differ: JAX {jax_losses[0]:.6f} vs PyTorch '
      f'{torch_losses[0]:.6f}; the two models are not the same function.'
    )

  # Interleaved rounds (one JAX step, one PyTorch step) and medians, so
  # that load drifting on a shared machine hits both alike.
  # Wall time and this process's CPU time per step: on a machine shared
  # with other jobs the wall time counts the time slices others got, the
  # CPU time (one thread each) only the step's own work.
  jax_times, torch_times, jax_cpu, torch_cpu = [], [], [], []
  for _ in range(args.steps):
    start, cpu = time.perf_counter(), time.process_time()
    params, opt_state, loss = step(params, opt_state, tokens)
    jax.block_until_ready(loss)
    jax_times.append(time.perf_counter() - start)
    jax_cpu.append(time.process_time() - cpu)
    start, cpu = time.perf_counter(), time.process_time()
    torch_step()
    torch_times.append(time.perf_counter() - start)
    torch_cpu.append(time.process_time() - cpu)
  t_jax = statistics.median(jax_times)
  t_torch = statistics.median(torch_times)
  cpu_ratio = statistics.median(torch_cpu) / statistics.median(jax_cpu)

  n_tok = b * args.seq_len
  jax_tps, torch_tps = n_tok / t_jax, n_tok / t_torch
  ratio = jax_tps / torch_tps
  shape = (
    f'{args.preset} d{config.d_model} L{config.n_layers} '
    f'V{config.vocab_size}, batch {b}x{args.seq_len}, adamw, CPU, '
    f'torch {torch.__version__}, {torch.get_num_threads()} threads'
  )
  print(
    f'loss step 0: JAX {jax_losses[0]:.6f} PyTorch {torch_losses[0]:.6f};'
    f' step 1: JAX {jax_losses[1]:.6f} PyTorch {torch_losses[1]:.6f}'
  )
  print(
    f'JAX {jax_tps:.0f} tokens/s, PyTorch {torch_tps:.0f} tokens/s '
    f'(median of {args.steps} interleaved steps); CPU time per step '
    f'JAX {1e3 * statistics.median(jax_cpu):.0f} ms, PyTorch '
    f'{1e3 * statistics.median(torch_cpu):.0f} ms (ratio {cpu_ratio:.2f}); '
    f'load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores'
  )
  print(
    f'lm_train_vs_torch: ratio={ratio:.2f} (JAX tokens/s / PyTorch '
    f'tokens/s, {shape})'
  )
  return {
    'ratio': ratio,
    'cpu_ratio': cpu_ratio,
    'jax_losses': jax_losses,
    'torch_losses': torch_losses,
  }


if __name__ == '__main__':
  main()
