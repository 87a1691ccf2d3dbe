"""Hypothesis strategies for relations and architecture facts (needs ``hypothesis``).

Public test helpers, importable by any test suite: valid input and parameter values
for a :class:`~theory.relation.Relation`, and small random
:class:`~theory.architecture.ArchitectureFacts` of either block topology. Importing
:mod:`theory` does not import this module.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from theory.architecture import ArchitectureFacts
from theory.relation import Relation
from theory.symbols import QUANTITIES, Domain

__all__ = ["relation_values", "architecture_facts", "PARAMETER_BOUND", "MAX_RATIO"]

#: Parameters are drawn from ``[-PARAMETER_BOUND, PARAMETER_BOUND]`` (intersected with
#: their direction domain when asked); together with ``MAX_RATIO`` this keeps every
#: relation's output finite in float64.
PARAMETER_BOUND = 2.0
#: Largest ``D/d`` drawn.
MAX_RATIO = 8

_FLOAT = {"allow_nan": False, "allow_infinity": False}


def _interval(domain: Domain, low: float, high: float) -> st.SearchStrategy[float]:
    lo, hi = max(domain.lower, low), min(domain.upper, high)
    if lo > hi:
        raise ValueError(f"domain {domain} does not meet [{low}, {high}]")
    return st.floats(
        lo,
        hi,
        exclude_min=not domain.lower_closed and lo == domain.lower,
        exclude_max=not domain.upper_closed and hi == domain.upper,
        **_FLOAT,
    )


@st.composite
def relation_values(
    draw: st.DrawFn,
    relation: Relation,
    *,
    reported_direction: bool = False,
    max_hidden_size: int = 8192,
) -> dict[str, Any]:
    """Valid values of every input and parameter of ``relation``, keyed by name.

    Parameters
    ----------
    relation : Relation
    reported_direction : bool
        Draw parameters only from ``relation.parameter_domains`` (where the relation
        keeps the reported direction).
    max_hidden_size : int
        Largest ``hidden_size`` drawn.

    Notes
    -----
    Inputs: ``hidden_size`` in ``[8, max_hidden_size]``; ``kept_dim`` in
    ``[ceil(D / MAX_RATIO), D]``; ``ppl_dense`` in ``(1, 50]``; ``acc_dense`` in
    ``[0.01, 1]``; ``chance`` in ``[0, acc_dense)``; ``retained_energy`` in ``[0.2, 1]``.
    """
    values: dict[str, Any] = {}
    names = {s.name for s in relation.inputs}
    if "hidden_size" in names or "kept_dim" in names:
        hidden = draw(st.integers(8, max_hidden_size))
        values["hidden_size"] = hidden
        values["kept_dim"] = draw(st.integers(math.ceil(hidden / MAX_RATIO), hidden))
    if "ppl_dense" in names:
        values["ppl_dense"] = draw(st.floats(1.0, 50.0, exclude_min=True, **_FLOAT))
    if "acc_dense" in names or "chance" in names:
        values["acc_dense"] = draw(st.floats(0.01, 1.0, **_FLOAT))
    if "chance" in names:
        fraction = draw(st.floats(0.0, 0.99, **_FLOAT))
        values["chance"] = fraction * values["acc_dense"]
    if "retained_energy" in names:
        values["retained_energy"] = draw(st.floats(0.2, 1.0, **_FLOAT))
    for symbol in relation.inputs:
        if symbol.name not in values:
            domain = QUANTITIES[symbol].domain
            values[symbol.name] = draw(_interval(domain, -PARAMETER_BOUND, PARAMETER_BOUND))
    for symbol in relation.parameters:
        domain = (
            relation.parameter_domains.get(symbol, Domain()) if reported_direction else Domain()
        )
        values[symbol.name] = draw(_interval(domain, -PARAMETER_BOUND, PARAMETER_BOUND))
    return {name: values[name] for name in relation.argnames}


@st.composite
def architecture_facts(draw: st.DrawFn, *, max_hidden_size: int = 64) -> ArchitectureFacts:
    """Small random architecture facts: GQA, gating, norms, biases, topology, ties."""
    kv_heads = draw(st.integers(1, 4))
    heads = kv_heads * draw(st.integers(1, 4))
    head_dim = draw(st.integers(1, 16))
    hidden = draw(st.integers(2, max_hidden_size))
    return ArchitectureFacts(
        architecture=draw(
            st.sampled_from(["LlamaForCausalLM", "PhiForCausalLM", "OPTForCausalLM"])
        ),
        hidden_size=hidden,
        num_layers=draw(st.integers(1, 4)),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=draw(st.integers(1, 4 * max_hidden_size)),
        vocab_size=draw(st.integers(1, 1000)),
        gated_mlp=draw(st.booleans()),
        norm_kind=draw(st.sampled_from(["rms", "layer"])),
        block_kind=draw(st.sampled_from(["sequential", "parallel"])),
        tied_embeddings=draw(st.booleans()),
        fused_qkv=draw(st.booleans()),
        fused_gate_up=draw(st.booleans()),
        attention_bias=draw(st.booleans()),
        attention_output_bias=draw(st.booleans()),
        mlp_bias=draw(st.booleans()),
        head_bias=draw(st.booleans()),
        learned_positions=draw(st.integers(0, 32)),
    )
