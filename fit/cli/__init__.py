"""The ``python -m fit`` command line: one module per subcommand.

Each subcommand module defines ``add_parser(subparsers)`` and ``run(args) -> int``, and
imports heavy libraries (torch, transformers, xarray) only inside ``run`` so that
``--help`` stays instant.

Exit codes: 0 done; 2 usage, input or schema error; 1 (with ``--strict``) theory rejected;
130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS = ("measure", "validate", "predict", "report", "ls")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fit",
        description="Predict and test how sliced (structurally pruned) LLMs behave as their "
        "representation dimension shrinks.",
        epilog="Run 'python -m fit COMMAND --help' for the options of one command.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"fit.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from measure.errors import ToolkitError

    try:
        return int(args.run(args) or 0)
    except ToolkitError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
