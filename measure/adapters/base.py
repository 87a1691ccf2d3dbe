"""The adapter contract: architecture facts plus access to the modules slicing touches.

An adapter wraps one live HF causal-LM. It says where the embeddings, the norms, the
attention and MLP linears, the final norm and the head live (as dotted paths, so
that a new family is mostly a table), and how one block computes its attention
half and its MLP half. Everything else (fusion, PCA, rotation, slicing, save and
load) is written once, in :mod:`measure.slicing`, against this contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from theory.architecture import ArchitectureFacts, BlockKind, NormKind

if TYPE_CHECKING:
    import torch
    from torch import nn


class DecoderAdapter:
    """Base class of every architecture adapter.

    Subclasses set the class attributes below and implement :meth:`facts_from_config`;
    they override :meth:`check_config` to refuse configurations the slicing cannot
    handle, and :meth:`attention_forward` / :meth:`mlp_forward` when the family wraps
    its halves in dropout or uses non-standard call signatures.

    Paths are dotted attribute paths (``torch.nn.Module.get_submodule`` syntax): the
    model-level ones are relative to the causal-LM, the layer-level ones to one
    decoder layer.

    Parameters
    ----------
    model : an HF ``PreTrainedModel`` of this family (dense, fused or sliced).
    """

    #: Closed vocabularies shared with :class:`theory.architecture.ArchitectureFacts`.
    norm_kind: ClassVar[NormKind]
    block_kind: ClassVar[BlockKind]

    # Model-level paths.
    embedding_paths: ClassVar[tuple[str, ...]] = ("model.embed_tokens",)
    layers_path: ClassVar[str] = "model.layers"
    final_norm_path: ClassVar[str] = "model.norm"
    head_path: ClassVar[str] = "lm_head"

    # Layer-level paths.
    attention_norm_path: ClassVar[str] = "input_layernorm"
    mlp_norm_path: ClassVar[str | None] = "post_attention_layernorm"
    attention_module_path: ClassVar[str] = "self_attn"
    attention_input_paths: ClassVar[tuple[str, ...]] = (
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
    )
    attention_output_path: ClassVar[str] = "self_attn.o_proj"
    mlp_module_path: ClassVar[str] = "mlp"
    mlp_input_paths: ClassVar[tuple[str, ...]] = ("mlp.gate_proj", "mlp.up_proj")
    mlp_output_path: ClassVar[str] = "mlp.down_proj"

    def __init__(self, model: nn.Module) -> None:
        self.check_config(model.config)
        self.model = model
        self.architecture = architecture_name(model)
        self.facts = self.facts_from_config(model.config, architecture=self.architecture)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.architecture}, D={self.facts.hidden_size})"

    # ----------------------------------------------------------------- facts
    @classmethod
    def facts_from_config(
        cls, config: Any, *, architecture: str | None = None
    ) -> ArchitectureFacts:
        """Build the torch-free architecture facts from an HF config."""
        raise NotImplementedError

    @classmethod
    def check_config(cls, config: Any) -> None:
        """Raise :class:`~measure.adapters.UnsupportedModelError` for unsliceable configs."""

    # ------------------------------------------------------- module access
    def embeddings(self) -> list[nn.Embedding]:
        """Embeddings that write the residual stream: token first, then positions."""
        return [self.model.get_submodule(p) for p in self.embedding_paths]

    def layers(self) -> list[nn.Module]:
        return list(self.model.get_submodule(self.layers_path))

    def attention_norm(self, layer: nn.Module) -> nn.Module:
        """The norm read by the attention (and, for parallel blocks, by the MLP)."""
        return layer.get_submodule(self.attention_norm_path)

    def mlp_norm(self, layer: nn.Module) -> nn.Module | None:
        """The norm read by the MLP; ``None`` for parallel blocks (they share one)."""
        return None if self.mlp_norm_path is None else layer.get_submodule(self.mlp_norm_path)

    def attention_inputs(self, layer: nn.Module) -> list[nn.Linear]:
        """Linears reading the normed residual stream for attention (q, k, v or fused)."""
        return [layer.get_submodule(p) for p in self.attention_input_paths]

    def attention_output(self, layer: nn.Module) -> nn.Linear:
        """The linear writing attention back to the residual stream."""
        return layer.get_submodule(self.attention_output_path)

    def mlp_inputs(self, layer: nn.Module) -> list[nn.Linear]:
        """Linears reading the normed residual stream for the MLP."""
        return [layer.get_submodule(p) for p in self.mlp_input_paths]

    def mlp_output(self, layer: nn.Module) -> nn.Linear:
        """The linear writing the MLP back to the residual stream."""
        return layer.get_submodule(self.mlp_output_path)

    def final_norm(self) -> nn.Module:
        return self.model.get_submodule(self.final_norm_path)

    def head(self) -> nn.Linear:
        return self.model.get_submodule(self.head_path)

    def norm_paths(self) -> list[str]:
        """Model-level dotted paths of every norm on the residual stream, in order."""
        paths = []
        for i in range(len(self.layers())):
            prefix = f"{self.layers_path}.{i}."
            paths.append(prefix + self.attention_norm_path)
            if self.mlp_norm_path is not None:
                paths.append(prefix + self.mlp_norm_path)
        paths.append(self.final_norm_path)
        return paths

    # ----------------------------------------------------- block arithmetic
    @classmethod
    def attention_forward(
        cls, layer: nn.Module, hidden_states: torch.Tensor, kwargs: Mapping[str, Any]
    ) -> torch.Tensor:
        """Attention half of a block on already-normed input, before the residual add.

        ``kwargs`` are the keyword arguments the HF model passed to the decoder layer
        (masks, rotary ``position_embeddings``, position ids, cache flags).
        """
        return layer.get_submodule(cls.attention_module_path)(
            hidden_states=hidden_states, **kwargs
        )[0]

    @classmethod
    def mlp_forward(cls, layer: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
        """MLP half of a block on already-normed input, before the residual add."""
        return layer.get_submodule(cls.mlp_module_path)(hidden_states)

    @staticmethod
    def norm_eps(norm: nn.Module) -> float:
        """The epsilon of a LayerNorm or an HF RMSNorm module."""
        for name in ("eps", "variance_epsilon", "epsilon"):
            value = getattr(norm, name, None)
            if isinstance(value, float | int):
                return float(value)
        raise AttributeError(f"cannot find the epsilon of {type(norm).__name__}")


def architecture_name(model_or_config: Any) -> str:
    """``config.architectures[0]``, or the model's class name for configs built in code."""
    config = getattr(model_or_config, "config", model_or_config)
    archs = getattr(config, "architectures", None)
    if archs:
        return str(archs[0])
    if hasattr(model_or_config, "config"):
        return type(model_or_config).__name__
    raise ValueError(
        "the config has no 'architectures' entry; set config.architectures = "
        "['<ModelClass>'] or pass the model itself"
    )


def config_value(config: Any, *names: str, default: Any = None) -> Any:
    """First attribute of ``config`` among ``names`` that is set and not ``None``."""
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def shape_facts(config: Any, architecture: str, **family: Any) -> ArchitectureFacts:
    """Architecture facts whose shape fields come from the usual HF config attributes.

    ``family`` gives what the config does not say in a standard way (MLP gating, norm kind,
    block kind, biases, fusion, learned positions) and overrides any shape field a family
    names differently (OPT's ``ffn_dim``, say).
    """
    heads = int(config.num_attention_heads)
    shape: dict[str, Any] = {
        "architecture": architecture,
        "hidden_size": int(config.hidden_size),
        "num_layers": int(config.num_hidden_layers),
        "num_attention_heads": heads,
        "num_key_value_heads": int(config_value(config, "num_key_value_heads", default=heads)),
        "head_dim": int(config_value(config, "head_dim", default=config.hidden_size // heads)),
        "intermediate_size": int(config_value(config, "intermediate_size", default=0)),
        "vocab_size": int(config.vocab_size),
        "tied_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
    }
    return ArchitectureFacts(**{**shape, **family})
