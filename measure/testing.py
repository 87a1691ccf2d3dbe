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
