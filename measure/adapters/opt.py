"""OPT family: ``OPTForCausalLM``.

Facts
-----
- LayerNorm (with bias) before attention, before the MLP and before the head.
- Sequential blocks; dropout after attention and after ``fc2`` (identity in eval mode).
- Separate ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``, all with biases when
  ``enable_bias`` (the default); no GQA.
- Ungated MLP ``fc1`` -> activation -> ``fc2``, with biases when ``enable_bias``.
- Learned absolute positions: ``embed_positions`` has ``max_position_embeddings + 2``
  rows (HF offsets position ids by 2); both embeddings write the residual stream.
- Head without bias, tied to the token embedding by default.

Refused: ``word_embed_proj_dim != hidden_size`` (``project_in``/``project_out``, as
OPT-350m), ``do_layer_norm_before=False`` (post-norm blocks are not rotation
invariant) and a removed final LayerNorm.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from measure.adapters.base import DecoderAdapter, architecture_name, shape_facts
from measure.adapters.registry import UnsupportedModelError, register_adapter

#: HF's OPTLearnedPositionalEmbedding adds this many rows (and offsets ids by it).
POSITION_OFFSET = 2


@register_adapter("OPTForCausalLM")
class OPTAdapter(DecoderAdapter):
    """OPT: LayerNorm, sequential blocks, biases, learned positions, ungated MLP."""

    norm_kind = "layer"
    block_kind = "sequential"
    embedding_paths = ("model.decoder.embed_tokens", "model.decoder.embed_positions")
    layers_path = "model.decoder.layers"
    final_norm_path = "model.decoder.final_layer_norm"
    attention_norm_path = "self_attn_layer_norm"
    mlp_norm_path = "final_layer_norm"
    attention_output_path = "self_attn.out_proj"
    mlp_input_paths = ("fc1",)
    mlp_output_path = "fc2"

    @classmethod
    def check_config(cls, config: Any) -> None:
        problems = []
        proj = getattr(config, "word_embed_proj_dim", config.hidden_size)
        if proj != config.hidden_size:
            problems.append(
                f"word_embed_proj_dim={proj} differs from hidden_size={config.hidden_size} "
                "(project_in/project_out linears sit between the embeddings and the "
                "residual stream)"
            )
        if not getattr(config, "do_layer_norm_before", True):
            problems.append("do_layer_norm_before=False (post-norm blocks)")
        if getattr(config, "_remove_final_layer_norm", False):
            problems.append("_remove_final_layer_norm=True (no norm before the head)")
        if problems:
            raise UnsupportedModelError(
                "cannot slice this OPT configuration: "
                + "; ".join(problems)
                + ". SliceGPT needs pre-norm blocks whose norms read the residual stream "
                "directly; OPT-125m, 1.3b, 2.7b, 6.7b, 13b, 30b and 66b qualify."
            )

    @classmethod
    def facts_from_config(cls, config: Any, *, architecture: str | None = None):
        bias = bool(getattr(config, "enable_bias", True))
        heads = int(config.num_attention_heads)
        return shape_facts(
            config,
            architecture or architecture_name(config),
            num_key_value_heads=heads,
            head_dim=int(config.hidden_size) // heads,
            intermediate_size=int(config.ffn_dim),
            gated_mlp=False,
            norm_kind="layer",
            block_kind="sequential",
            tied_embeddings=bool(getattr(config, "tie_word_embeddings", True)),
            attention_bias=bias,
            attention_output_bias=bias,
            mlp_bias=bias,
            learned_positions=int(config.max_position_embeddings) + POSITION_OFFSET,
        )

    @classmethod
    def attention_forward(cls, layer, hidden_states, kwargs: Mapping[str, Any]):
        from torch.nn import functional as F

        out = layer.self_attn(hidden_states=hidden_states, **kwargs)[0]
        return F.dropout(out, p=layer.dropout, training=layer.training)

    @classmethod
    def mlp_forward(cls, layer, hidden_states):
        from torch.nn import functional as F

        out = layer.fc2(layer.activation_fn(layer.fc1(hidden_states)))
        return F.dropout(out, p=layer.dropout, training=layer.training)
