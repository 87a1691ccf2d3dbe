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
