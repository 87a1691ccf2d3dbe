"""Symbolic dimension–performance relations and architecture facts (pure Python + sympy).

A flat public API over :mod:`theory.relation` (the relation object),
:mod:`theory.relations` (the catalogue), :mod:`theory.counts` (parameter and FLOP
counts of sliced models) and :mod:`theory.architecture` (architecture facts).
"""

from __future__ import annotations

from theory.architecture import ArchitectureFacts
from theory.registry import Registry, UnknownNameError
from theory.relation import Gradient, NumericFunction, Relation
from theory.relations import (
    PAPER,
    RELATIONS,
    get_relation,
    list_relations,
    register_relation,
)

__all__ = [
    "ArchitectureFacts",
    "Gradient",
    "NumericFunction",
    "PAPER",
    "RELATIONS",
    "Registry",
    "Relation",
    "UnknownNameError",
    "get_relation",
    "list_relations",
    "register_relation",
]
