"""The paper's two families end to end: tiny random Llama-3 and Phi-3 models built from the
real ``LlamaConfig`` / ``Phi3Config`` class defaults, shrunk but otherwise unchanged, run
through the complete ``python -m fit validate`` pipeline.

Kept from the defaults (and, for Llama-3, from its published config.json, since the
``LlamaConfig`` class defaults describe Llama-2-7B): the GQA ratio (Llama-3 32/8 -> 4/1;
Phi-3-mini 32/32 -> 4/4), fused ``qkv_proj`` and ``gate_up_proj`` (Phi-3), the rope
settings (Llama-3 rope_theta 500000; Phi-3 the class default rope parameters), the
RMSNorm epsilon, and untied heads. Shrunk: hidden size, layers, heads, MLP width (same
ratio to the hidden size, rounded), vocabulary (a word-level tokenizer).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import word_tokenizer

from fit.cli import main
from measure.archive import read_cell
from measure.plan import model_facts
from theory.architecture import LLAMA3_8B, PHI3_MINI
from theory.counts import dense_parameter_count, sliced_parameter_count

HIDDEN, LAYERS, HEADS = 64, 2, 4
KEPT = (56, 48, 40)
WORDS = [f"w{i}" for i in range(96)]


def llama3_config(vocab_size: int):
    from transformers import LlamaConfig

    values = LlamaConfig().to_dict()
    values.update(
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS * LLAMA3_8B.num_key_value_heads // LLAMA3_8B.num_attention_heads,
        head_dim=HIDDEN // HEADS,
        intermediate_size=HIDDEN * LLAMA3_8B.intermediate_size // LLAMA3_8B.hidden_size,
        vocab_size=vocab_size,
        # Meta-Llama-3-8B(-Instruct) config.json, where it differs from the class defaults.
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        rms_norm_eps=1e-5,
        max_position_embeddings=8192,
        architectures=["LlamaForCausalLM"],
    )
    return LlamaConfig(**values)


def phi3_config(vocab_size: int):
    from transformers import Phi3Config

    values = Phi3Config().to_dict()  # the class defaults are Phi-3-mini-4k
    values.update(
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS * PHI3_MINI.num_key_value_heads // PHI3_MINI.num_attention_heads,
        intermediate_size=HIDDEN * PHI3_MINI.intermediate_size // PHI3_MINI.hidden_size,
        vocab_size=vocab_size,
        # The shrunk vocabulary has no id 32000: use the word tokenizer's </s>.
        eos_token_id=2,
        pad_token_id=2,
        architectures=["Phi3ForCausalLM"],
    )
    return Phi3Config(**values)


BUILDERS = {"llama3": llama3_config, "phi3": phi3_config}


@pytest.fixture(scope="module", params=["llama3", "phi3"])
def paper_model(request, tmp_path_factory):
    from transformers import AutoModelForCausalLM

    family = request.param
    root = tmp_path_factory.mktemp(family)
    tokenizer = word_tokenizer(WORDS)
    config = BUILDERS[family](len(tokenizer))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    rng = np.random.default_rng(1)
    text = "\n\n".join(" ".join(rng.choice(WORDS, size=50)) for _ in range(60))
    (root / "corpus.txt").write_text(text)
    return family, root, model


def test_tiny_models_keep_the_paper_architectures(paper_model):
    from transformers import LlamaConfig, Phi3Config

    family, root, model = paper_model
    saved = json.loads((root / "model" / "config.json").read_text())
    facts, _ = model_facts(str(root / "model"))
    published = {"llama3": LLAMA3_8B, "phi3": PHI3_MINI}[family]
    ratio = published.num_attention_heads // published.num_key_value_heads
    assert facts.num_attention_heads // facts.num_key_value_heads == ratio
    assert not facts.tied_embeddings and not saved["tie_word_embeddings"]
    assert (facts.fused_qkv, facts.fused_gate_up) == (published.fused_qkv, published.fused_gate_up)
    assert facts.norm_kind == published.norm_kind and facts.gated_mlp == published.gated_mlp
    if family == "llama3":
        assert saved["rope_parameters"]["rope_theta"] == 500000.0
        assert model.model.layers[0].self_attn.k_proj.out_features == HIDDEN // ratio
    else:
        defaults = Phi3Config().to_dict()
        assert saved["rope_parameters"] == defaults["rope_parameters"]
        assert hasattr(model.model.layers[0].self_attn, "qkv_proj")
        assert hasattr(model.model.layers[0].mlp, "gate_up_proj")
    assert LlamaConfig().to_dict()["tie_word_embeddings"] is False


def test_validate_runs_end_to_end(paper_model, tmp_path, capsys):
    family, root, _ = paper_model
    corpus = str(root / "corpus.txt")
    runs = tmp_path / "runs"
    args = ["validate", "--model", str(root / "model"), "--calibration-corpus", corpus]
    args += ["--corpus", corpus, "--nsamples", "4", "--calibration-seqlen", "16"]
    args += ["--seqlen", "16", "--eval-windows", "4", "--tasks", "none", "--capture-windows", "2"]
    args += ["--kept-dim", ",".join(map(str, KEPT)), "--runs", str(runs)]
    args += ["--output", str(tmp_path / "report"), "--no-progress", "--n-boot", "200"]
    assert main(args) == 0
    assert "ppl_reported" in capsys.readouterr().out
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["protocol"]["input"] == "measured archives"
    assert (tmp_path / "report" / "report.tex").is_file()

    # Measured parameter counts agree with the theory's exact counts from config.json.
    facts, _ = model_facts(str(root / "model"))
    cells = {int(ds.kept_dim): ds for ds in map(read_cell, runs.glob("*.nc"))}
    assert sorted(cells) == sorted([*KEPT, HIDDEN])
    assert int(cells[HIDDEN].attrs["parameter_count"]) == dense_parameter_count(facts)
    for d in KEPT:
        assert int(cells[d].attrs["parameter_count"]) == sliced_parameter_count(facts, d)
        assert np.isfinite(float(cells[d].ppl)) and float(cells[d].kl_divergence) > 0
    expected = {"llama3": "LlamaForCausalLM", "phi3": "Phi3ForCausalLM"}[family]
    assert cells[HIDDEN].attrs["architecture"] == expected

    # The planner sees the finished cells.
    assert main([*args, "--dry-run"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert sum(row.endswith(" done") for row in rows) == len(KEPT) + 1
