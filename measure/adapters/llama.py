"""Llama family: ``LlamaForCausalLM`` (Llama-2/3, SmolLM2), ``MistralForCausalLM``,
``Qwen2ForCausalLM``.

Facts
-----
- RMSNorm before attention and before the MLP, and before the head; no norm biases.
- Sequential blocks: ``x + attn(norm1(x))`` then ``+ mlp(norm2(.))``.
- Separate ``q_proj``, ``k_proj``, ``v_proj`` (GQA when KV heads < heads) and ``o_proj``.
- Gated MLP (SwiGLU): separate ``gate_proj`` and ``up_proj``, then ``down_proj``.
- Biases: Llama has none unless ``attention_bias`` (q, k, v *and* o) or ``mlp_bias``;
  Mistral has none; Qwen2 has q, k, v biases but no o bias and no MLP biases.
- Rotary positions (no learned position table); the head has no bias and is tied to
  the token embedding when ``tie_word_embeddings`` (SmolLM2, small Qwen2).
"""

from __future__ import annotations

from typing import Any

from measure.adapters.base import DecoderAdapter, architecture_name, shape_facts
from measure.adapters.registry import register_adapter
from theory.architecture import ArchitectureFacts


def _rotary_facts(config: Any, architecture: str, **biases: bool) -> ArchitectureFacts:
    return shape_facts(
        config, architecture, gated_mlp=True, norm_kind="rms", block_kind="sequential", **biases
    )


@register_adapter("LlamaForCausalLM")
class LlamaAdapter(DecoderAdapter):
    """Llama (and SmolLM2): RMSNorm, sequential blocks, separate q/k/v, SwiGLU MLP.

    No biases unless the config sets ``attention_bias`` (q, k, v and o) or
    ``mlp_bias`` (gate, up, down). RMSNorm has no bias. Nothing is fused.
    """

    norm_kind = "rms"
    block_kind = "sequential"

    @classmethod
    def facts_from_config(cls, config: Any, *, architecture: str | None = None):
        attention_bias = bool(getattr(config, "attention_bias", False))
        return _rotary_facts(
            config,
            architecture or architecture_name(config),
            attention_bias=attention_bias,
            attention_output_bias=attention_bias,
            mlp_bias=bool(getattr(config, "mlp_bias", False)),
        )


@register_adapter("MistralForCausalLM")
class MistralAdapter(LlamaAdapter):
    """Mistral: the Llama structure with no biases anywhere (sliding window is irrelevant)."""

    @classmethod
    def facts_from_config(cls, config: Any, *, architecture: str | None = None):
        return _rotary_facts(config, architecture or architecture_name(config))


@register_adapter("Qwen2ForCausalLM")
class Qwen2Adapter(LlamaAdapter):
    """Qwen2: the Llama structure with biases on q, k, v only (none on o or the MLP)."""

    @classmethod
    def facts_from_config(cls, config: Any, *, architecture: str | None = None):
        return _rotary_facts(config, architecture or architecture_name(config), attention_bias=True)
