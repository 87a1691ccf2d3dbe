"""Phi family (Phi-1, Phi-1.5, Phi-2): ``PhiForCausalLM``.

Facts
-----
- LayerNorm (with bias); one ``input_layernorm`` per block, read by both halves.
- Parallel blocks: ``x + attn(ln(x)) + mlp(ln(x))``, with residual dropout on both
  halves (identity in eval mode). One shortcut matrix per block after slicing.
- Separate ``q_proj``, ``k_proj``, ``v_proj`` and ``dense`` (attention output), all
  with biases. Partial rotary embedding (``partial_rotary_factor``), no learned
  positions.
- Ungated MLP ``fc1`` -> GELU -> ``fc2``, with biases.
- ``final_layernorm`` before an untied head *with* a bias.

Refused: ``qk_layernorm=True`` (extra per-head norms that the architecture facts and
the parameter accounting do not describe).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from measure.adapters.base import DecoderAdapter, architecture_name, shape_facts
from measure.adapters.registry import UnsupportedModelError, register_adapter


@register_adapter("PhiForCausalLM")
class PhiAdapter(DecoderAdapter):
    """Phi-2: LayerNorm, parallel attention+MLP sharing one norm, biases everywhere."""

    norm_kind = "layer"
    block_kind = "parallel"
    final_norm_path = "model.final_layernorm"
    mlp_norm_path = None
    attention_output_path = "self_attn.dense"
    mlp_input_paths = ("mlp.fc1",)
    mlp_output_path = "mlp.fc2"

    @classmethod
    def check_config(cls, config: Any) -> None:
        if getattr(config, "qk_layernorm", False):
            raise UnsupportedModelError(
                "cannot slice this Phi configuration: qk_layernorm=True adds per-head "
                "LayerNorms on queries and keys, which the architecture facts and the "
                "parameter accounting do not describe. Phi-1, Phi-1.5 and Phi-2 qualify."
            )

    @classmethod
    def facts_from_config(cls, config: Any, *, architecture: str | None = None):
        return shape_facts(
            config,
            architecture or architecture_name(config),
            gated_mlp=False,
            norm_kind="layer",
            block_kind="parallel",
            attention_bias=True,
            attention_output_bias=True,
            mlp_bias=True,
            head_bias=True,
        )

    @classmethod
    def attention_forward(cls, layer, hidden_states, kwargs: Mapping[str, Any]):
        out = layer.self_attn(hidden_states=hidden_states, **kwargs)[0]
        return layer.resid_dropout(out)

    @classmethod
    def mlp_forward(cls, layer, hidden_states):
        return layer.resid_dropout(layer.mlp(hidden_states))
