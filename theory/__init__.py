"""Symbolic dimension–performance relations and architecture facts (pure Python + sympy).

A flat public API over :mod:`theory.relation` (the relation object),
:mod:`theory.relations` (the catalogue), :mod:`theory.counts` (parameter and FLOP
counts of sliced models), :mod:`theory.architecture` (architecture facts) and
:mod:`theory.symbols` (the symbols relations are written in).
"""

from __future__ import annotations

from theory.architecture import (
    KNOWN_ARCHITECTURES,
    LLAMA3_8B,
    PHI3_MINI,
    SMOLLM2_135M,
    ArchitectureFacts,
)
from theory.counts import (
    break_even_kept_dim,
    dense_flops_per_token,
    dense_parameter_count,
    kept_dim_from_sparsity,
    parameter_breakdown,
    sliced_flops_per_token,
    sliced_parameter_count,
    sliced_parameter_polynomial,
    sparsity_from_kept_dim,
)
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
    "KNOWN_ARCHITECTURES",
    "LLAMA3_8B",
    "NumericFunction",
    "PAPER",
    "PHI3_MINI",
    "RELATIONS",
    "Registry",
    "Relation",
    "SMOLLM2_135M",
    "UnknownNameError",
    "break_even_kept_dim",
    "dense_flops_per_token",
    "dense_parameter_count",
    "get_relation",
    "kept_dim_from_sparsity",
    "list_relations",
    "parameter_breakdown",
    "register_relation",
    "sliced_flops_per_token",
    "sliced_parameter_count",
    "sliced_parameter_polynomial",
    "sparsity_from_kept_dim",
]
