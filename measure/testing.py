"""Public test helpers: tiny random models per family, random orthogonal matrices,
hypothesis strategies and logit assertions.

Like ``xarray.testing``, these are part of the library so that third-party adapters
can run the same contract and invariance checks on their own families.

Examples
--------
>>> import torch
>>> from measure.testing import random_orthogonal, tiny_model
>>> model = tiny_model("llama", seed=0)
>>> model.config.architectures
['LlamaForCausalLM']
>>> q = random_orthogonal(8, seed=1)
>>> bool(torch.allclose(q.T @ q, torch.eye(8, dtype=q.dtype), atol=1e-12))
True
"""

from __future__ import annotations

from typing import Any, Literal

import torch

Family = Literal["llama", "llama-tied", "mistral", "qwen2", "phi3", "opt", "phi"]

#: Every family with a tiny model; one per registered adapter, plus a tied Llama
#: (the SmolLM2 case).
FAMILIES: tuple[Family, ...] = ("llama", "llama-tied", "mistral", "qwen2", "phi3", "opt", "phi")

#: The tiny family that exercises each built-in adapter.
FAMILY_OF_ARCHITECTURE: dict[str, Family] = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Phi3ForCausalLM": "phi3",
    "OPTForCausalLM": "opt",
    "PhiForCausalLM": "phi",
}


def fusion_tolerance(norm_kind: str) -> float:
    """Tolerance for comparing a fused float64 model with its dense parent.

    HF's RMSNorm casts its input to float32 whatever the model dtype, so a dense
    float64 RMSNorm model is only float32-accurate; the fused model's norm is not.
    LayerNorm models have no such cast and agree to float64 rounding.
    """
    return 1e-5 if norm_kind == "rms" else 1e-10


def tiny_config(
    family: Family,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 64,
    vocab_size: int = 128,
    max_positions: int = 64,
    **overrides: Any,
) -> Any:
    """An HF config of ``family`` with tiny sizes and ``architectures`` set.

    GQA (``num_kv_heads < num_heads``) is used where the family supports it.
    ``overrides`` are passed to the config class last.
    """
    import transformers as tf

    common: dict[str, Any] = dict(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        vocab_size=vocab_size,
        max_position_embeddings=max_positions,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    rotary = dict(common, num_key_value_heads=num_kv_heads, intermediate_size=intermediate_size)
    if family in ("llama", "llama-tied"):
        cls, kwargs = tf.LlamaConfig, dict(rotary, tie_word_embeddings=family == "llama-tied")
    elif family == "mistral":
        cls, kwargs = tf.MistralConfig, rotary
    elif family == "qwen2":
        cls, kwargs = tf.Qwen2Config, rotary
    elif family == "phi3":
        cls, kwargs = tf.Phi3Config, rotary
    elif family == "phi":
        cls, kwargs = tf.PhiConfig, rotary
    elif family == "opt":
        cls = tf.OPTConfig
        kwargs = dict(common, ffn_dim=intermediate_size, word_embed_proj_dim=hidden_size)
    else:
        raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")
    kwargs.update(overrides)
    config = cls(**kwargs)
    config.architectures = [cls.__name__.replace("Config", "ForCausalLM")]
    return config


@torch.no_grad()
def randomize_(model: torch.nn.Module, *, seed: int = 0, embedding_offset: float = 0.5) -> None:
    """Give every parameter a generic random value, in place.

    HF initialises norm scales to one and biases to zero, which would make fusion
    tests vacuous. Here linears get ``N(0, 1/fan_in)``, biases and norm shifts
    ``N(0, 0.1²)``, norm scales ``1 + N(0, 0.2²)``, and embeddings ``N(0, 1)`` plus a
    shared offset vector so that the residual stream has a non-zero mean.
    """
    gen = torch.Generator().manual_seed(seed)

    def normal(shape: torch.Size, std: float) -> torch.Tensor:
        return torch.randn(shape, generator=gen, dtype=torch.float64) * std

    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, torch.nn.Linear) and id(module.weight) in embedding_weights:
            continue  # a head tied to the embedding keeps the embedding's values
        bias = getattr(module, "bias", None)
        if isinstance(module, torch.nn.Embedding):
            offset = normal(module.weight.shape[1:], embedding_offset)
            module.weight.copy_(normal(module.weight.shape, 1.0) + offset)
        elif isinstance(module, torch.nn.Linear):
            module.weight.copy_(normal(module.weight.shape, module.in_features**-0.5))
            if bias is not None:
                bias.copy_(normal(bias.shape, 0.1))
        elif isinstance(weight, torch.nn.Parameter) and weight.dim() == 1:
            # LayerNorm / RMSNorm scales (and LayerNorm shifts).
            weight.copy_(1.0 + normal(weight.shape, 0.2))
            if isinstance(bias, torch.nn.Parameter):
                bias.copy_(normal(bias.shape, 0.1))


def tiny_model(
    family: Family,
    *,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    **config_overrides: Any,
) -> Any:
    """A tiny randomly initialised causal-LM of ``family`` in eval mode.

    Parameters
    ----------
    family : one of :data:`FAMILIES`.
    dtype : parameter dtype; float64 for exactness tests.
    seed : seed of :func:`randomize_`.
    config_overrides : passed to :func:`tiny_config`.
    """
    import transformers as tf

    config = tiny_config(family, **config_overrides)
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(config)
    randomize_(model, seed=seed)
    return model.to(dtype).eval()


def random_tokens(vocab_size: int, num_windows: int, seqlen: int, *, seed: int = 0) -> torch.Tensor:
    """``LongTensor[num_windows, seqlen]`` of uniform random token ids."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (num_windows, seqlen), generator=gen)


def random_orthogonal(
    n: int,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """A Haar-distributed random orthogonal ``n x n`` matrix.

    QR of a standard Gaussian matrix, with the signs of ``R``'s diagonal moved into
    ``Q`` (Mezzadri 2007) so that the distribution is uniform on O(n).
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
    a = torch.randn(n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(()))
    return q.to(dtype)


def assert_logits_close(
    actual: torch.Tensor, expected: torch.Tensor, *, rtol: float = 1e-9, atol: float = 1e-9
) -> None:
    """Assert two logit tensors agree, reporting the worst absolute difference."""
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual - expected).abs().max().item()
    torch.testing.assert_close(
        actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{m}\nmax |diff| = {diff:.3e}"
    )


@torch.no_grad()
def logits(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Logits of ``model`` on ``tokens`` with the KV cache off."""
    return model(input_ids=tokens, use_cache=False).logits


# --------------------------------------------------------------- hypothesis
def orthogonal_matrices(n: int, *, dtype: torch.dtype = torch.float64):
    """Hypothesis strategy of Haar-random orthogonal ``n x n`` tensors (seed-driven)."""
    from hypothesis import strategies as st

    return st.integers(0, 2**32 - 1).map(lambda s: random_orthogonal(n, seed=s, dtype=dtype))


def families():
    """Hypothesis strategy over :data:`FAMILIES`."""
    from hypothesis import strategies as st

    return st.sampled_from(FAMILIES)


def tiny_models(family: Family | None = None, *, dtype: torch.dtype = torch.float64):
    """Hypothesis strategy of tiny random models (one family, or any)."""
    from hypothesis import strategies as st

    fam = st.just(family) if family is not None else families()
    return st.builds(lambda f, s: tiny_model(f, dtype=dtype, seed=s), fam, st.integers(0, 2**16))


# ------------------------------------------------------------ verification
def assert_adapter_contract(model: Any) -> Any:
    """Check an adapter's declared facts against the live module tree of ``model``.

    Every shape, bias, norm kind, block topology and tie that
    :class:`~theory.architecture.ArchitectureFacts` declares is compared with the
    modules the adapter points at, and the dense parameter count implied by the
    facts (:func:`theory.dense_parameter_count`) with the model's. Run it on a tiny
    random model of a new family before anything else.

    Returns
    -------
    ArchitectureFacts
        The adapter's facts, once checked.
    """
    from measure.adapters import DecoderAdapter, architecture_facts, get_adapter
    from theory import dense_parameter_count

    adapter = get_adapter(model)
    facts = adapter.facts
    assert isinstance(adapter, DecoderAdapter)
    assert facts == architecture_facts(model.config), "facts differ between model and config"
    D, V = facts.hidden_size, facts.vocab_size
    assert adapter.norm_kind == facts.norm_kind, "adapter.norm_kind != facts.norm_kind"
    assert adapter.block_kind == facts.block_kind, "adapter.block_kind != facts.block_kind"

    embeddings = adapter.embeddings()
    assert embeddings[0] is model.get_input_embeddings(), "first embedding is not the token one"
    assert tuple(embeddings[0].weight.shape) == (V, D), "token embedding shape"
    if facts.learned_positions:
        assert len(embeddings) == 2, "learned_positions declared but no position embedding"
        assert tuple(embeddings[1].weight.shape) == (facts.learned_positions, D), (
            "position embedding rows != learned_positions"
        )
    else:
        assert len(embeddings) == 1, "position embedding present but learned_positions == 0"

    layers = adapter.layers()
    assert len(layers) == facts.num_layers, "num_layers"
    qkv = (facts.num_attention_heads + 2 * facts.num_key_value_heads) * facts.head_dim
    mlp_in = (2 if facts.gated_mlp else 1) * facts.intermediate_size
    for i, layer in enumerate(layers):
        norms = [adapter.attention_norm(layer)]
        if facts.block_kind == "sequential":
            norms.append(adapter.mlp_norm(layer))
        else:
            assert adapter.mlp_norm(layer) is None, "parallel blocks share one norm"
        for norm in norms + ([adapter.final_norm()] if i == 0 else []):
            assert tuple(norm.weight.shape) == (D,), "norm width"
            is_layer_norm = isinstance(norm, torch.nn.LayerNorm)
            assert is_layer_norm == (facts.norm_kind == "layer"), f"norm kind of {norm}"
            if is_layer_norm:
                assert norm.bias is not None, "LayerNorm without bias"
            else:
                assert getattr(norm, "bias", None) is None, "RMSNorm with a bias"
            assert adapter.norm_eps(norm) > 0
        attn_in = adapter.attention_inputs(layer)
        assert len(attn_in) == (1 if facts.fused_qkv else 3), "fused_qkv"
        assert sum(lin.out_features for lin in attn_in) == qkv, "attention input widths"
        for lin in attn_in:
            assert lin.in_features == D, "attention inputs read D"
            assert (lin.bias is not None) == facts.attention_bias, "attention_bias"
        attn_out = adapter.attention_output(layer)
        assert (attn_out.in_features, attn_out.out_features) == (
            facts.num_attention_heads * facts.head_dim,
            D,
        ), "attention output shape"
        assert (attn_out.bias is not None) == facts.attention_output_bias, "attention_output_bias"
        mlp_inputs = adapter.mlp_inputs(layer)
        separate = facts.gated_mlp and not facts.fused_gate_up
        assert len(mlp_inputs) == (2 if separate else 1), "gated_mlp / fused_gate_up"
        assert sum(lin.out_features for lin in mlp_inputs) == mlp_in, "mlp input widths"
        for lin in mlp_inputs:
            assert lin.in_features == D, "mlp inputs read D"
            assert (lin.bias is not None) == facts.mlp_bias, "mlp_bias (inputs)"
        mlp_out = adapter.mlp_output(layer)
        assert (mlp_out.in_features, mlp_out.out_features) == (facts.intermediate_size, D), (
            "mlp output shape"
        )
        assert (mlp_out.bias is not None) == facts.mlp_bias, "mlp_bias (output)"

    head = adapter.head()
    assert head is model.get_output_embeddings(), "head is not the output embedding"
    assert (head.in_features, head.out_features) == (D, V), "head shape"
    assert (head.bias is not None) == facts.head_bias, "head_bias"
    assert (head.weight is embeddings[0].weight) == facts.tied_embeddings, "tied_embeddings"
    count = sum(p.numel() for p in model.parameters())
    assert dense_parameter_count(facts) == count, "dense parameter count from facts"
    return facts
