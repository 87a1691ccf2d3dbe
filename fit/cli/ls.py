"""``python -m fit ls``: list what the toolkit knows about."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "ls",
        help="list models and corpora",
        description="List the model aliases and the corpora the toolkit knows about.",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from measure.data import CORPORA
    from measure.models import ALIASES

    print("models")
    for name, spec in ALIASES.items():
        print(f"  {name:<10} {spec.hf_id or ''}  [{spec.licence}]")
        print(f"  {'':<10} {spec.notes}")
    print("corpora")
    for name, text in CORPORA.items():
        print(f"  {name:<14} {text}")
    return 0
