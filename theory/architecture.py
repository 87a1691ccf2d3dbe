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

    def parameter_count(self) -> int:
        """Exact parameter count of the dense model (see :mod:`theory.counts`).

        Examples
        --------
        >>> PHI3_MINI.parameter_count()
        3821079552
        """
        from theory.counts import dense_parameter_count

        return dense_parameter_count(self)

    def sliced_parameter_count(self, kept_dim: int, *, slice_head: bool = False) -> int:
        """Exact parameter count after SliceGPT slicing to a constant width ``kept_dim``."""
        from theory.counts import sliced_parameter_count

        return sliced_parameter_count(self, kept_dim, slice_head=slice_head)


# Facts of the models the toolkit studies, from their published configurations.

#: meta-llama/Meta-Llama-3-8B(-Instruct): 8,030,261,248 parameters.
LLAMA3_8B = ArchitectureFacts(
    architecture="LlamaForCausalLM",
    hidden_size=4096,
    num_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    intermediate_size=14336,
    vocab_size=128256,
    gated_mlp=True,
    norm_kind="rms",
    block_kind="sequential",
    tied_embeddings=False,
)

#: microsoft/Phi-3-mini-4k-instruct: fused qkv and gate_up, no biases.
PHI3_MINI = ArchitectureFacts(
    architecture="Phi3ForCausalLM",
    hidden_size=3072,
    num_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    head_dim=96,
    intermediate_size=8192,
    vocab_size=32064,
    gated_mlp=True,
    norm_kind="rms",
    block_kind="sequential",
    tied_embeddings=False,
    fused_qkv=True,
    fused_gate_up=True,
)

#: HuggingFaceTB/SmolLM2-135M(-Instruct): tied embeddings.
SMOLLM2_135M = ArchitectureFacts(
    architecture="LlamaForCausalLM",
    hidden_size=576,
    num_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
    intermediate_size=1536,
    vocab_size=49152,
    gated_mlp=True,
    norm_kind="rms",
    block_kind="sequential",
    tied_embeddings=True,
)

#: Known facts by a short alias.
KNOWN_ARCHITECTURES: dict[str, ArchitectureFacts] = {
    "llama3": LLAMA3_8B,
    "phi3": PHI3_MINI,
    "smollm2": SMOLLM2_135M,
}
