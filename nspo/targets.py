"""Which parameters a null-space projection targets, and their inputs.

Parameters are named by `common.optim.path_str` ('/'-joined pytree path,
e.g. `layers/3/mlp/gate_proj/kernel`; the `.value` of an NNX `Variable` is
dropped). A *target* maps a regular expression on that path to a capture
*site*: the name of the activation that is the targeted kernel's input
(`mlp_in` for gate/up, `mlp_hidden` for down, ...). Targets are resolved
with `common.optim.resolve_targets` (`re.search`, so the `$`-anchored
patterns below select the kernel under any prefix). The expression's named
group `layer` gives the layer index; without it, the kernel is taken to be a
scan-stacked `[L, d_in, ...]` array covering every layer of the site.
"""

from __future__ import annotations

# Kernel inputs of a SwiGLU MLP: gate/up read the block's MLP input, down
# reads the hidden activation `act(gate(x)) * up(x)`.
MLP_TARGETS: dict[str, str] = {
  r'layers/(?P<layer>\d+)/mlp/(gate_proj|up_proj)/kernel$': 'mlp_in',
  r'layers/(?P<layer>\d+)/mlp/down_proj/kernel$': 'mlp_hidden',
}
# Attention projections: q/k/v read the attention input, o reads the
# concatenated head outputs.
ATTENTION_TARGETS: dict[str, str] = {
  r'layers/(?P<layer>\d+)/attn/(q_proj|k_proj|v_proj)/kernel$': 'attn_in',
  r'layers/(?P<layer>\d+)/attn/o_proj/kernel$': 'attn_out',
}
