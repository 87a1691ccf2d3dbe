"""Architecture facts: the torch-free description of a decoder-only transformer.

Every adapter in :mod:`measure.adapters` declares one :class:`ArchitectureFacts` for the
model it wraps; :mod:`theory` builds exact parameter and FLOP counts from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

NormKind = Literal["rms", "layer"]
BlockKind = Literal["sequential", "parallel"]


@dataclass(frozen=True)
class ArchitectureFacts:
    """What the theory needs to know about one architecture instance.

    Attributes
    ----------
    architecture : HF ``config.architectures[0]`` string, e.g. ``"LlamaForCausalLM"``.
    hidden_size : width ``D`` of the residual stream.
    num_layers : number of transformer blocks.
    num_attention_heads, num_key_value_heads, head_dim : attention shape (GQA when
        ``num_key_value_heads < num_attention_heads``).
    intermediate_size : MLP width.
    vocab_size : rows of the token embedding and of the head.
    gated_mlp : ``True`` for SwiGLU-style (gate, up, down), ``False`` for fc1/act/fc2.
    norm_kind : ``"rms"`` (RMSNorm) or ``"layer"`` (LayerNorm with mean subtraction).
    block_kind : ``"sequential"`` (attn then MLP, two norms) or ``"parallel"`` (both read
        one norm and add to the residual together, as Phi-2).
    tied_embeddings : the head shares its weight with the token embedding.
    fused_qkv, fused_gate_up : the projections are stored as one linear.
    attention_bias : q/k/v projections carry biases.
    attention_output_bias : the attention output projection carries a bias.
    mlp_bias : the MLP linears carry biases.
    head_bias : the LM head carries a bias.
    learned_positions : rows of a learned absolute position embedding (0 for rotary).
    """

    architecture: str
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    gated_mlp: bool
    norm_kind: NormKind
    block_kind: BlockKind
    tied_embeddings: bool
    fused_qkv: bool = False
    fused_gate_up: bool = False
    attention_bias: bool = False
    attention_output_bias: bool = False
    mlp_bias: bool = False
    head_bias: bool = False
    learned_positions: int = 0

    def __post_init__(self) -> None:
        for name in (
            "hidden_size",
            "num_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "intermediate_size",
            "vocab_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.norm_kind not in ("rms", "layer"):
            raise ValueError(f"norm_kind must be 'rms' or 'layer', got {self.norm_kind!r}")
        if self.block_kind not in ("sequential", "parallel"):
            raise ValueError(
                f"block_kind must be 'sequential' or 'parallel', got {self.block_kind!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchitectureFacts:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
