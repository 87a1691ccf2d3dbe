"""Adapter registry and the contract every registered adapter must honour."""

from __future__ import annotations

import pytest
import torch

from measure.adapters import (
    ADAPTERS,
    UnknownArchitectureError,
    UnsupportedModelError,
    adapter_class,
    architecture_facts,
    get_adapter,
    register_adapter,
    registered_architectures,
)
from measure.adapters import registry as registry_module
from measure.errors import ToolkitError
from measure.testing import (
    FAMILY_OF_ARCHITECTURE,
    assert_adapter_contract,
    tiny_config,
    tiny_model,
)
from theory.architecture import LLAMA3_8B, PHI3_MINI, SMOLLM2_135M

BUILTIN = sorted(FAMILY_OF_ARCHITECTURE)


def test_builtin_families_are_registered():
    assert set(BUILTIN) <= set(registered_architectures())


def test_unknown_architecture_lists_adapters_and_suggests():
    with pytest.raises(UnknownArchitectureError) as info:
        adapter_class("LlamaForCausalLm")
    message = str(info.value)
    assert "Did you mean 'LlamaForCausalLM'?" in message
    for name in BUILTIN:
        assert name in message
    assert isinstance(info.value, ToolkitError)


def test_unknown_architecture_without_close_match_has_no_suggestion():
    with pytest.raises(UnknownArchitectureError) as info:
        adapter_class("GPT2LMHeadModel")
    assert "Did you mean" not in str(info.value)


def test_runtime_registration_by_decorator():
    name = "TinyTestLlamaForCausalLM"
    try:

        @register_adapter(name)
        class TinyTest(type(get_adapter(tiny_model("llama")))):
            pass

        assert adapter_class(name) is TinyTest
        model = tiny_model("llama")
        model.config.architectures = [name]
        assert isinstance(get_adapter(model), TinyTest)
    finally:
        ADAPTERS._entries.pop(name, None)


def test_entry_points_register_lazily(monkeypatch):
    from importlib.metadata import EntryPoint

    name = "EntryPointLlamaForCausalLM"
    fake = [EntryPoint(name, "measure.adapters.llama:LlamaAdapter", "repdim.adapters")]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: fake)
    monkeypatch.setattr(registry_module, "_entry_points_loaded", False)
    try:
        assert name in registered_architectures()
        assert isinstance(ADAPTERS._entries[name], str)  # not imported yet
        from measure.adapters.llama import LlamaAdapter

        assert adapter_class(name) is LlamaAdapter
    finally:
        ADAPTERS._entries.pop(name, None)


def test_broken_lazy_entry_is_a_clear_error():
    ADAPTERS.add_lazy("BrokenForCausalLM", "no_such_package.module:Adapter")
    try:
        with pytest.raises(UnknownArchitectureError, match="cannot be imported"):
            adapter_class("BrokenForCausalLM")
    finally:
        ADAPTERS._entries.pop("BrokenForCausalLM", None)


# ------------------------------------------------------------------ contract
@pytest.mark.parametrize("architecture", BUILTIN)
def test_adapter_contract(architecture):
    """Declared facts match the live module tree of a tiny random model."""
    model = tiny_model(FAMILY_OF_ARCHITECTURE[architecture])
    facts = assert_adapter_contract(model)
    assert facts.architecture == architecture


def test_contract_catches_a_wrong_fact(monkeypatch):
    from measure.adapters.llama import LlamaAdapter

    original = LlamaAdapter.facts_from_config.__func__

    def wrong(cls, config, *, architecture=None):
        import dataclasses

        return dataclasses.replace(original(cls, config, architecture=architecture), mlp_bias=True)

    monkeypatch.setattr(LlamaAdapter, "facts_from_config", classmethod(wrong))
    with pytest.raises(AssertionError, match="mlp"):
        assert_adapter_contract(tiny_model("llama"))


@pytest.mark.parametrize("architecture", BUILTIN)
def test_block_halves_reproduce_the_layer(architecture):
    """attention_forward / mlp_forward compose to the HF layer's own forward."""
    model = tiny_model(FAMILY_OF_ARCHITECTURE[architecture])
    adapter = get_adapter(model)
    from measure.slicing.interleaved import capture_layer0_inputs

    tokens = torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(0))
    (x,), (kwargs,) = capture_layer0_inputs(model, adapter, [(tokens, None)])
    layer = adapter.layers()[0]
    with torch.no_grad():
        expected = layer(x, **kwargs)
        normed = adapter.attention_norm(layer)(x)
        attn = adapter.attention_forward(layer, normed, kwargs)
        if adapter.block_kind == "parallel":
            actual = attn + adapter.mlp_forward(layer, normed) + x
        else:
            mid = x + attn
            actual = mid + adapter.mlp_forward(layer, adapter.mlp_norm(layer)(mid))
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_tied_llama_declares_tied_embeddings():
    model = tiny_model("llama-tied")
    assert get_adapter(model).facts.tied_embeddings


def test_qwen2_declares_qkv_biases_only():
    facts = architecture_facts(tiny_config("qwen2"))
    assert facts.attention_bias and not facts.attention_output_bias and not facts.mlp_bias


# ------------------------------------------------- published configurations
def test_facts_of_published_configs_match_theory():
    from transformers import LlamaConfig, Phi3Config

    llama3 = LlamaConfig(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=14336,
        vocab_size=128256,
        tie_word_embeddings=False,
    )
    llama3.architectures = ["LlamaForCausalLM"]
    assert architecture_facts(llama3) == LLAMA3_8B
    smol = LlamaConfig(
        hidden_size=576,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        intermediate_size=1536,
        vocab_size=49152,
        tie_word_embeddings=True,
    )
    smol.architectures = ["LlamaForCausalLM"]
    assert architecture_facts(smol) == SMOLLM2_135M
    phi3 = Phi3Config(
        hidden_size=3072,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        intermediate_size=8192,
        vocab_size=32064,
        pad_token_id=32000,
        tie_word_embeddings=False,
    )
    phi3.architectures = ["Phi3ForCausalLM"]
    assert architecture_facts(phi3) == PHI3_MINI


# --------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("family", "overrides", "needle"),
    [
        ("opt", {"word_embed_proj_dim": 16}, "word_embed_proj_dim"),
        ("opt", {"do_layer_norm_before": False}, "do_layer_norm_before"),
        ("opt", {"_remove_final_layer_norm": True}, "_remove_final_layer_norm"),
        ("phi", {"qk_layernorm": True}, "qk_layernorm"),
    ],
)
def test_unsliceable_configs_are_refused(family, overrides, needle):
    config = tiny_config(family, **overrides)
    with pytest.raises(UnsupportedModelError, match=needle) as info:
        architecture_facts(config)
    assert isinstance(info.value, ToolkitError)


def test_config_without_architectures_needs_a_model():
    config = tiny_config("llama")
    config.architectures = None
    with pytest.raises(ValueError, match="architectures"):
        architecture_facts(config)
