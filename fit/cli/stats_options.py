"""Argument groups of the statistics subcommands (``validate``, ``report``)."""

from __future__ import annotations

import argparse


def probability(text: str) -> float:
    """An ``argparse`` type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {value}")
    return value


def relation_list(text: str) -> list[str]:
    """An ``argparse`` type: comma-separated relation names (checked later, with hints)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected at least one relation name")
    return names


def add_statistics_arguments(parser: argparse.ArgumentParser) -> None:
    """``--alpha``, tolerances, ``--correction``, ``--relations``, bootstrap, ``--strict``."""
    group = parser.add_argument_group("statistics")
    group.add_argument(
        "--alpha",
        type=probability,
        default=0.05,
        help="level of tests and intervals (default 0.05)",
    )
    group.add_argument(
        "--ppl-tolerance",
        type=probability,
        default=0.05,
        help="equivalence margin for perplexity and tau, relative (default 0.05 = ±5%%)",
    )
    group.add_argument(
        "--acc-tolerance",
        type=probability,
        default=0.02,
        help="equivalence margin for accuracy, absolute (default 0.02 = ±2 points)",
    )
    group.add_argument(
        "--correction",
        choices=("holm", "bh", "none"),
        default="holm",
        help="multiple-testing control within each family of tests: holm (family-wise "
        "error, default), bh (Benjamini-Hochberg false discovery rate) or none",
    )
    group.add_argument(
        "--relations",
        type=relation_list,
        default=None,
        metavar="NAME[,NAME...]",
        help="relations to consider (default: every registered relation; see 'python -m fit ls')",
    )
    group.add_argument(
        "--bootstrap-seed", type=int, default=0, help="seed of the paired bootstrap (default 0)"
    )
    group.add_argument(
        "--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000; 0: none)"
    )
    group.add_argument(
        "--strict",
        action="store_true",
        help="exit with code 1 when a relation is rejected",
    )


def statistics_kwargs(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`fit.validate.run_validation` from parsed options."""
    return {
        "relations": args.relations,
        "alpha": args.alpha,
        "ppl_tolerance": args.ppl_tolerance,
        "acc_tolerance": args.acc_tolerance,
        "correction": args.correction,
        "seed": args.bootstrap_seed,
        "n_boot": args.n_boot,
    }
