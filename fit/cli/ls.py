"""``python -m fit ls``: list what the toolkit knows about."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "ls",
        help="list models, corpora, adapters, relations and tasks",
        description="List the model aliases, corpora, architecture adapters, relations and "
        "tasks the toolkit knows about.",
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
    _print_theory_and_tasks()
    return 0


def _print_theory_and_tasks() -> None:
    from measure.adapters import registered_architectures
    from measure.tasks import HUB_TASKS, OFFLINE_TASKS
    from theory import get_relation, list_relations

    print("adapters (HF config.architectures[0])")
    print("  " + ", ".join(registered_architectures()))
    print("relations")
    for name in list_relations():
        relation = get_relation(name)
        constants = ", ".join(p.name for p in relation.parameters) or "no constants"
        print(f"  {name:<18} {relation.output.name:<4} {relation.origin:<13} ({constants})")
        print(f"  {'':<18} {relation.formula_text()}")
    print("tasks")
    print(f"  offline: {', '.join(OFFLINE_TASKS)}")
    print(f"  hub:     {', '.join(HUB_TASKS)}")
