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

from measure.adapters.base import DecoderAdapter, architecture_name, config_value
from measure.adapters.registry import register_adapter
from theory.architecture import ArchitectureFacts


@register_adapter("Phi3ForCausalLM")
class Phi3Adapter(DecoderAdapter):
    """Phi-3: RMSNorm, sequential blocks, fused q/k/v and fused gate/up, no biases."""

    norm_kind = "rms"
    block_kind = "sequential"
    attention_input_paths = ("self_attn.qkv_proj",)
    mlp_input_paths = ("mlp.gate_up_proj",)

    @classmethod
    def facts_from_config(cls, config: Any, *, architecture: str | None = None):
        heads = int(config.num_attention_heads)
        return ArchitectureFacts(
            architecture=architecture or architecture_name(config),
            hidden_size=int(config.hidden_size),
            num_layers=int(config.num_hidden_layers),
            num_attention_heads=heads,
            num_key_value_heads=int(config_value(config, "num_key_value_heads", default=heads)),
            head_dim=int(config_value(config, "head_dim", default=config.hidden_size // heads)),
            intermediate_size=int(config.intermediate_size),
            vocab_size=int(config.vocab_size),
            gated_mlp=True,
            norm_kind="rms",
            block_kind="sequential",
            tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
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
