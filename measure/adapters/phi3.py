"""Phi-3 family: ``Phi3ForCausalLM``.

Facts
-----
- RMSNorm before attention, before the MLP and before the head; no biases anywhere.
- Sequential blocks with residual dropout on both halves (identity in eval mode).
- Fused ``qkv_proj`` (rows: q heads, then k heads, then v heads) and ``o_proj``.
- Gated MLP with fused ``gate_up_proj`` (rows: gate, then up) and ``down_proj``.
- Rotary positions (possibly partial); the head is untied and has no bias.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from measure.adapters.base import DecoderAdapter, architecture_name, shape_facts
from measure.adapters.registry import register_adapter


@register_adapter("Phi3ForCausalLM")
class Phi3Adapter(DecoderAdapter):
    """Phi-3: RMSNorm, sequential blocks, fused q/k/v and fused gate/up, no biases."""

    norm_kind = "rms"
    block_kind = "sequential"
    attention_input_paths = ("self_attn.qkv_proj",)
    mlp_input_paths = ("mlp.gate_up_proj",)

    @classmethod
    def facts_from_config(cls, config: Any, *, architecture: str | None = None):
        return shape_facts(
            config,
            architecture or architecture_name(config),
            gated_mlp=True,
            norm_kind="rms",
            block_kind="sequential",
            fused_qkv=True,
            fused_gate_up=True,
        )

    @classmethod
    def attention_forward(cls, layer, hidden_states, kwargs: Mapping[str, Any]):
        out = layer.self_attn(hidden_states=hidden_states, **kwargs)[0]
        return layer.resid_attn_dropout(out)

    @classmethod
    def mlp_forward(cls, layer, hidden_states):
        return layer.resid_mlp_dropout(layer.mlp(hidden_states))
