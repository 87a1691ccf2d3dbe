"""LaTeX output: it parses back (sympy's lark backend) to the same equation.

Needs the ``lark`` package; sympy's other backend needs antlr4 runtime 4.11 exactly.
Report symbols such as ``\\mathrm{PPL}_{\\mathrm{dense}}`` are outside what the parser
reads, so the parsed string is ``latex(plain=True)``, and a separate test shows it is
the report string with only the symbol spellings changed.
"""

from __future__ import annotations

import random

import pytest
import sympy as sp

from theory import RELATIONS, get_relation
from theory.symbols import QUANTITIES

NAMES = RELATIONS.names()
FORMS = ["display", "explicit"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", NAMES)
def test_plain_latex_differs_only_in_symbol_spellings(name: str, form: str) -> None:
    relation = get_relation(name)
    pretty = relation.latex(form=form)
    plain = relation.latex(form=form, plain=True)
    symbols = (*relation.inputs, *relation.parameters, relation.output)
    quantities = sorted(
        (QUANTITIES[s] for s in symbols if QUANTITIES[s].latex != QUANTITIES[s].plain_latex),
        key=lambda q: -len(q.latex),
    )
    # Longest spelling first, through placeholders, so that PPL never matches inside
    # PPL_dense and a replacement is never replaced again.
    respelled = pretty
    for i, q in enumerate(quantities):
        respelled = respelled.replace(q.latex, f"\0{i}\0")
    for i, q in enumerate(quantities):
        respelled = respelled.replace(f"\0{i}\0", q.plain_latex)
    assert respelled == plain
    assert pretty.count("=") == 1


def _parsed_symbol(plain_latex: str) -> str:
    return plain_latex.removeprefix("\\")


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", NAMES)
def test_latex_parses_back_to_the_same_equation(name: str, form: str) -> None:
    pytest.importorskip("lark")
    from sympy.parsing.latex import parse_latex

    relation = get_relation(name)
    parsed = parse_latex(relation.latex(form=form, plain=True), backend="lark")
    assert isinstance(parsed, sp.Equality), f"ambiguous or not an equation: {parsed!r}"
    symbols = (*relation.inputs, *relation.parameters, relation.output)
    by_parsed_name = {_parsed_symbol(QUANTITIES[s].plain_latex): s for s in symbols}
    mapping = {}
    for symbol in parsed.free_symbols:
        if symbol.name == "e":
            mapping[symbol] = sp.E
        else:
            assert symbol.name in by_parsed_name, f"unexpected symbol {symbol} in {parsed}"
            mapping[symbol] = by_parsed_name[symbol.name]
    equation = parsed.xreplace(mapping)
    rng = random.Random(name + form)
    for _ in range(5):
        values = {s: sp.Float(rng.uniform(0.3, 0.9), 30) for s in symbols}
        values.update(
            {
                s: sp.Integer(v)
                for s, v in zip(
                    relation.inputs[:2], sorted([rng.randint(2, 64), rng.randint(2, 64)])
                )
            }
        )
        for s in relation.inputs:
            if s.name == "ppl_dense":
                values[s] = sp.Float(rng.uniform(2.0, 20.0), 30)
            if s.name == "chance":
                values[s] = sp.Float(rng.uniform(0.0, 0.2), 30)
        values[relation.output] = relation.expr.subs(values).evalf(40)
        residual = (equation.lhs - equation.rhs).subs(values).evalf(30)
        assert abs(complex(residual)) < 1e-20, (name, form, parsed)
