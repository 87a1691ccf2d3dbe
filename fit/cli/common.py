"""Argument groups shared by several subcommands."""

from __future__ import annotations

import argparse


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default="smollm2",
        help="alias (smollm2, llama3, phi3), Hugging Face id, or local directory "
        "(default: smollm2, offline)",
    )
    # No command-line defaults: the --profile supplies them (cpu/float32, or cuda/float16
    # for the paper profile), and an explicit flag overrides the profile.
    group.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: from --profile; cpu)"
    )
    group.add_argument(
        "--dtype",
        default=None,
        choices=("float32", "float16", "bfloat16"),
        help="weights and activations dtype (default: from --profile; float32)",
    )
    group.add_argument(
        "--device-map", default=None, help="e.g. 'auto' to split a large model over devices"
    )
    group.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    group.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow model code from the hub (off by default; read it first)",
    )


def add_corpus_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("evaluation data")
    group.add_argument(
        "--corpus",
        default="enwiki-sample",
        help="enwiki-sample (offline), lee-news (offline), wikitext2 (hub), or a UTF-8 text "
        "file (default: enwiki-sample)",
    )
    group.add_argument(
        "--seqlen", type=positive_int, default=512, help="tokens per window (default: 512)"
    )
    group.add_argument(
        "--eval-windows",
        type=positive_int,
        default=None,
        help="evaluate only the first N windows of the evaluation part (default: all)",
    )
    group.add_argument(
        "--batch-size", type=positive_int, default=4, help="windows per forward pass (default: 4)"
    )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value
