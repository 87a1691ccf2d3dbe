"""Property tests of the relation catalogue: numerics, dense anchoring, direction, nesting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import RELATIONS, get_relation
from theory.relation import Relation
from theory.testing import relation_values

pytestmark = pytest.mark.property

ALL = RELATIONS.names()
FAST = settings(max_examples=25, deadline=None)


def _subs(relation: Relation, values: dict[str, float]) -> dict[sp.Symbol, sp.Expr]:
    symbols = {s.name: s for s in relation.inputs + relation.parameters}
    return {
        symbols[n]: sp.Float(v, 30) if isinstance(v, float) else sp.Integer(v)
        for n, v in values.items()
    }


def _draw(data: st.DataObject, relation: Relation, **kwargs: object) -> dict[str, float]:
    return data.draw(relation_values(relation, **kwargs), label=relation.name)


@pytest.mark.parametrize("name", ALL)
@FAST
@given(data=st.data())
def test_lambdified_equals_sympy_evalf(name: str, data: st.DataObject) -> None:
    relation = get_relation(name)
    values = _draw(data, relation)
    numeric = relation.lambdify()(**values)
    exact = float(relation.expr.evalf(30, subs=_subs(relation, values)))
    assert math.isfinite(exact)
    assert numeric == pytest.approx(exact, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("name", ALL)
@FAST
@given(data=st.data())
def test_gradient_matches_sympy_and_finite_differences(name: str, data: st.DataObject) -> None:
    relation = get_relation(name)
    values = _draw(data, relation)
    gradient = relation.gradient()
    numeric = np.asarray(gradient.function(**values))
    assert numeric.shape == (len(relation.parameters),)
    subs = _subs(relation, values)
    f = relation.lambdify()
    for i, (parameter, expr) in enumerate(zip(relation.parameters, gradient.exprs)):
        exact = float(expr.evalf(30, subs=subs))
        assert numeric[i] == pytest.approx(exact, rel=1e-8, abs=1e-12)
        h = 1e-6
        up = dict(values, **{parameter.name: values[parameter.name] + h})
        down = dict(values, **{parameter.name: values[parameter.name] - h})
        central = (f(**up) - f(**down)) / (2 * h)
        assert central == pytest.approx(exact, rel=1e-4, abs=1e-6 * max(1.0, abs(f(**values))))


@pytest.mark.parametrize("name", ALL)
@FAST
@given(data=st.data())
def test_display_equation_holds_for_the_explicit_output(name: str, data: st.DataObject) -> None:
    relation = get_relation(name)
    values = _draw(data, relation)
    subs = _subs(relation, values)
    subs[relation.output] = relation.expr.evalf(40, subs=subs)
    equation = relation.display if relation.display is not None else relation.equation
    # The display form keeps D/d unevaluated for printing; doit() releases it.
    lhs = float(equation.lhs.subs(subs).doit().evalf(30))
    rhs = float(equation.rhs.subs(subs).doit().evalf(30))
    assert lhs == pytest.approx(rhs, rel=1e-9, abs=1e-12)


def _anchored() -> list[str]:
    return [n for n in ALL if get_relation(n).anchored]


@pytest.mark.parametrize("name", ALL)
def test_every_relation_is_anchored_or_nests_an_anchored_one(name: str) -> None:
    relation = get_relation(name)
    if not relation.anchored:
        anchored = [o for o in relation.nests_at if get_relation(o).anchored]
        assert anchored, f"{name} is not anchored and nests no anchored relation"


@pytest.mark.parametrize("name", _anchored())
def test_dense_value_at_dense_point_symbolically(name: str) -> None:
    relation = get_relation(name)
    at_dense = relation.expr.subs(dict(relation.dense_point))
    assert sp.simplify(at_dense - relation.dense_value) == 0


@pytest.mark.parametrize("name", ALL)
@FAST
@given(data=st.data())
def test_dense_value_at_dense_point_numerically(name: str, data: st.DataObject) -> None:
    """Anchored relations return the dense value at d = D for any parameters.

    A relation that is not anchored (ppl_affine_free: PPL_dense^(a + b) at d = D) is
    checked on the anchored sub-family it nests (b = 1 - a), where it must hold.
    """
    relation = get_relation(name)
    values = _draw(data, relation)
    if not relation.anchored:
        other = get_relation(next(o for o in relation.nests_at if get_relation(o).anchored))
        other_values = _draw(data, other)
        restriction = relation.nests(other)
        assert restriction is not None
        for key, expr in restriction.items():
            subs = {p: other_values[p.name] for p in other.parameters}
            values[key] = float(sp.sympify(expr).subs(subs))
        for key in values.keys() & other_values.keys() - {p.name for p in relation.parameters}:
            values[key] = other_values[key]
    for symbol, point in relation.dense_point.items():
        values[symbol.name] = float(point.subs({s: values[s.name] for s in point.free_symbols}))
    dense = float(relation.dense_value.subs(_subs(relation, values)))
    assert relation.lambdify()(**values) == pytest.approx(dense, rel=1e-12)


MONOTONE = [n for n in ALL if get_relation(n).monotone is not None]


@pytest.mark.parametrize("name", MONOTONE)
@FAST
@given(data=st.data())
def test_monotone_in_the_reported_direction(name: str, data: st.DataObject) -> None:
    """PPL never falls as d (or rho) shrinks, and accuracy never rises, where declared."""
    relation = get_relation(name)
    values = _draw(data, relation, reported_direction=True)
    variable, sign = relation.monotone
    f = relation.lambdify()
    if variable.name == "kept_dim":
        other = data.draw(st.integers(math.ceil(values["hidden_size"] / 8), values["hidden_size"]))
    else:
        other = data.draw(st.floats(0.2, 1.0))
    low, high = sorted([values[variable.name], other])
    at_low = f(**dict(values, **{variable.name: low}))
    at_high = f(**dict(values, **{variable.name: high}))
    assert sign * (at_high - at_low) >= -1e-12 * max(abs(at_low), abs(at_high), 1.0)


def test_ppl_relations_declare_the_reported_direction() -> None:
    for name in ALL:
        relation = get_relation(name)
        if relation.output.name == "ppl":
            assert relation.monotone is not None and relation.monotone[1] == -1, name


NESTINGS = [
    (general, restricted) for general in ALL for restricted in get_relation(general).nests_at
]


@pytest.mark.parametrize(("general", "restricted"), NESTINGS)
def test_nesting_holds_symbolically(general: str, restricted: str) -> None:
    big, small = get_relation(general), get_relation(restricted)
    values = big.nests(small)
    assert values is not None and set(values) == {p.name for p in big.parameters}
    assert small.nested_in(big) == values
    assert sp.simplify(big.restricted(values) - small.expr) == 0


@pytest.mark.parametrize(("general", "restricted"), NESTINGS)
@FAST
@given(data=st.data())
def test_nested_relations_coincide_at_nesting_values(
    general: str, restricted: str, data: st.DataObject
) -> None:
    big, small = get_relation(general), get_relation(restricted)
    values = _draw(data, small)
    nested = big.nests(small)
    assert nested is not None
    big_values = {s.name: values[s.name] for s in big.inputs}
    for name, expr in nested.items():
        big_values[name] = float(expr.subs({p: values[p.name] for p in small.parameters}))
    assert big.lambdify()(**big_values) == pytest.approx(small.lambdify()(**values), rel=1e-12)


@FAST
@given(
    d=st.lists(st.integers(512, 4096), min_size=1, max_size=5),
    ppl_dense=st.floats(1.01, 30.0),
)
def test_vectorised_call_matches_elementwise(d: list[int], ppl_dense: float) -> None:
    f = get_relation("ppl_power").lambdify()
    vector = f(kept_dim=np.array(d), hidden_size=4096, ppl_dense=ppl_dense, alpha=1.3)
    assert vector.shape == (len(d),)
    for i, di in enumerate(d):
        assert vector[i] == f(kept_dim=di, hidden_size=4096, ppl_dense=ppl_dense, alpha=1.3)
