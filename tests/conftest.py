"""Shared fixtures. Torch threads are pinned: oversubscribing 2 cores slows runs 5-10x."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


def _pin_threads() -> None:
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct (fp32, CPU), loaded once per test session."""
    _pin_threads()
    from measure.models import load_model

    return load_model("smollm2")


@pytest.fixture(scope="session")
def enwiki():
    from measure.data import load_corpus

    return load_corpus("enwiki-sample")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A word-level fast tokenizer that adds a BOS token, built without any download."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "alpha", "beta", "gamma", "delta", "\n"]
    vocab = {w: i for i, w in enumerate(words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def word_tokenizer(words: list[str]):
    """A word-level fast tokenizer over ``words`` (plus <unk>, <s>, </s>) that adds BOS."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="</s>",
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama (hidden 32) with a 64-word tokenizer, saved as a model directory,
    and a text corpus of those words (``corpus.txt`` beside it)."""
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("tiny")
    words = [f"w{i}" for i in range(64)]
    tokenizer = word_tokenizer(words)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        architectures=["LlamaForCausalLM"],
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    rng = np.random.default_rng(0)
    paragraphs = [" ".join(rng.choice(words, size=40)) for _ in range(60)]
    (root / "corpus.txt").write_text("\n\n".join(paragraphs))
    return root


@pytest.fixture(scope="session")
def tiny_sweep_config(tiny_model_dir):
    """A seconds-long measurement protocol on the tiny model and its corpus."""
    from measure.sweep import MeasureConfig

    corpus = str(tiny_model_dir / "corpus.txt")
    return MeasureConfig(
        model=str(tiny_model_dir / "model"),
        calibration_corpus=corpus,
        eval_corpus=corpus,
        nsamples=4,
        calibration_seqlen=16,
        eval_seqlen=16,
        eval_windows=3,
        batch_size=2,
        tasks=(),
        capture_windows=2,
    )
