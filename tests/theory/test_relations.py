"""The relation object and the catalogue: hand-computed values, conventions, errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import sympy as sp

from theory import PAPER, RELATIONS, Relation, UnknownNameError, get_relation, list_relations
from theory.symbols import hidden_size, kept_dim, ppl, ppl_dense

EXPECTED = [
    "ppl_reported",
    "ppl_power",
    "ppl_affine",
    "ppl_affine_free",
    "ppl_spectral",
    "acc_loglinear",
    "acc_parallel",
    "acc_power",
    "acc_chance_floor",
    "logit_temperature",
]


def test_catalogue_names_and_outputs() -> None:
    assert list_relations() == EXPECTED
    outputs = {name: get_relation(name).output.name for name in EXPECTED}
    assert {n for n, o in outputs.items() if o == "ppl"} == {
        "ppl_reported",
        "ppl_power",
        "ppl_affine",
        "ppl_affine_free",
        "ppl_spectral",
    }
    assert outputs["logit_temperature"] == "tau"


def test_unknown_relation_suggests() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'ppl_spectral'"):
        get_relation("ppl_spectrall")


def test_provenance_is_honest() -> None:
    reported = get_relation("ppl_reported")
    assert reported.origin == "reported"
    assert PAPER in reported.provenance and "2503.04377" in reported.provenance
    assert "secondary summaries" in reported.provenance
    assert "not a verified transcription" in reported.provenance
    for name in ("acc_loglinear", "acc_parallel", "acc_chance_floor"):
        relation = get_relation(name)
        assert relation.origin == "candidate"
        assert "do not have" in relation.provenance
    for name in ("ppl_power", "ppl_affine", "ppl_affine_free", "ppl_spectral"):
        assert get_relation(name).provenance.startswith("Derived here")
    for name in ("acc_power", "logit_temperature"):
        assert get_relation(name).origin == "derived here"
    for _, relation in RELATIONS.items():
        assert relation.assumptions and all(a.strip() for a in relation.assumptions)


# Hand-computed values: each case states the arithmetic.
CASES = [
    # ln PPL = (4096/2048) ln 6 -> PPL = 36
    ("ppl_reported", dict(kept_dim=2048, hidden_size=4096, ppl_dense=6.0), 36.0),
    # (D/d)^alpha = 4^0.5 = 2 -> PPL = 6^2
    ("ppl_power", dict(kept_dim=1024, hidden_size=4096, ppl_dense=6.0, alpha=0.5), 36.0),
    # ln PPL = (0.5 + 0.5 * 3) * 1 = 2
    ("ppl_affine", dict(kept_dim=1, hidden_size=3, ppl_dense=math.e, intercept=0.5), math.e**2),
    # ln PPL = (1 + 2 * 2) ln 2 = 5 ln 2
    (
        "ppl_affine_free",
        dict(kept_dim=2, hidden_size=4, ppl_dense=2.0, intercept=1.0, slope=2.0),
        32.0,
    ),
    # ln PPL = ln 3 / 0.25^0.5 = 2 ln 3
    (
        "ppl_spectral",
        dict(kept_dim=8, hidden_size=16, ppl_dense=3.0, retained_energy=0.25, beta=0.5),
        9.0,
    ),
    # ln(acc/0.8) = 2 (0.5 - 1) = -1
    ("acc_loglinear", dict(kept_dim=8, hidden_size=16, acc_dense=0.8, k=2.0), 0.8 / math.e),
    # acc = 0.9^2
    ("acc_parallel", dict(kept_dim=8, hidden_size=16, acc_dense=0.9), 0.81),
    # acc = 0.9^(4^0.5) = 0.9^2
    ("acc_power", dict(kept_dim=4, hidden_size=16, acc_dense=0.9, alpha=0.5), 0.81),
    # acc = 0.25 + (0.75 - 0.25) * 0.25
    (
        "acc_chance_floor",
        dict(kept_dim=4, hidden_size=16, acc_dense=0.75, chance=0.25, gamma=1.0),
        0.375,
    ),
    # tau = 0.25^0.5
    ("logit_temperature", dict(kept_dim=4, hidden_size=16, eta=0.5), 0.5),
]


@pytest.mark.parametrize(("name", "values", "expected"), CASES)
def test_hand_computed_values(name: str, values: dict, expected: float) -> None:
    relation = get_relation(name)
    assert relation.lambdify()(**values) == pytest.approx(expected, rel=1e-12)
    assert relation(**values) == pytest.approx(expected, rel=1e-12)
    positional = [values[n] for n in relation.argnames]
    assert relation.lambdify()(*positional) == pytest.approx(expected, rel=1e-12)


def test_lambdify_is_cached_and_named() -> None:
    relation = get_relation("ppl_power")
    f = relation.lambdify()
    assert relation.lambdify() is f
    assert f.argnames == ("kept_dim", "hidden_size", "ppl_dense", "alpha")
    assert relation.gradient() is relation.gradient()


def test_call_convention_errors() -> None:
    f = get_relation("ppl_reported").lambdify()
    with pytest.raises(TypeError, match="missing ppl_dense"):
        f(kept_dim=1, hidden_size=2)
    with pytest.raises(TypeError, match="unexpected argument 'd'"):
        f(d=1, hidden_size=2, ppl_dense=3.0)
    with pytest.raises(TypeError, match="two values"):
        f(1, hidden_size=2, ppl_dense=3.0, kept_dim=1)


def test_broadcasting_and_scalar_results() -> None:
    f = get_relation("logit_temperature").lambdify()
    out = f(kept_dim=np.array([[1], [2]]), hidden_size=4, eta=np.array([1.0, 2.0, 3.0]))
    assert out.shape == (2, 3)
    assert out[1, 1] == pytest.approx(0.25)
    assert isinstance(f(kept_dim=2, hidden_size=4, eta=1.0), np.floating)
    # An output that does not depend on an argument still takes its shape.
    g = get_relation("ppl_reported").lambdify()
    assert g(kept_dim=[4, 4, 4], hidden_size=4, ppl_dense=2.0).tolist() == [2.0, 2.0, 2.0]


def test_checked_call_refuses_values_outside_their_domain() -> None:
    relation = get_relation("acc_chance_floor")
    good = dict(kept_dim=4, hidden_size=16, acc_dense=0.75, chance=0.25, gamma=1.0)
    relation(**good)
    with pytest.raises(ValueError, match="kept_dim <= hidden_size"):
        relation(**dict(good, kept_dim=32))
    with pytest.raises(ValueError, match="chance < acc_dense"):
        relation(**dict(good, chance=0.8))
    with pytest.raises(ValueError, match="kept_dim must lie in integers"):
        relation(**dict(good, kept_dim=2.5))
    with pytest.raises(ValueError, match="ppl_dense must lie in"):
        get_relation("ppl_reported")(kept_dim=1, hidden_size=2, ppl_dense=0.5)


def test_gradient_hand_values_and_delta_method() -> None:
    relation = get_relation("logit_temperature")
    # d tau / d eta = (d/D)^eta ln(d/D); at d/D = 1/2, eta = 1: 0.5 ln 0.5
    g = relation.gradient().function(kept_dim=2, hidden_size=4, eta=1.0)
    assert g.shape == (1,)
    assert g[0] == pytest.approx(0.5 * math.log(0.5))
    variance = relation.variance([[0.04]], kept_dim=2, hidden_size=4, eta=1.0)
    assert variance == pytest.approx((0.5 * math.log(0.5)) ** 2 * 0.04)
    # No parameters: an empty trailing axis and zero variance.
    reported = get_relation("ppl_reported")
    empty = reported.gradient().function(kept_dim=[1, 2], hidden_size=4, ppl_dense=2.0)
    assert empty.shape == (2, 0)
    assert np.all(
        reported.variance(np.zeros((0, 0)), kept_dim=[1, 2], hidden_size=4, ppl_dense=2.0) == 0
    )


def test_gradient_of_two_parameters_has_a_trailing_axis() -> None:
    relation = get_relation("ppl_affine_free")
    g = relation.gradient().function(
        kept_dim=[1, 2, 4], hidden_size=4, ppl_dense=math.e, intercept=0.0, slope=1.0
    )
    # ln PPL = a + b D/d with ln PPL_dense = 1: dPPL/da = PPL, dPPL/db = PPL D/d
    ppl_values = np.exp([4.0, 2.0, 1.0])
    assert g.shape == (3, 2)
    np.testing.assert_allclose(g[:, 0], ppl_values)
    np.testing.assert_allclose(g[:, 1], ppl_values * [4.0, 2.0, 1.0])


def test_nesting_answers() -> None:
    reported, power = get_relation("ppl_reported"), get_relation("ppl_power")
    affine, free = get_relation("ppl_affine"), get_relation("ppl_affine_free")
    assert power.nests(reported) == {"alpha": 1}
    assert reported.nested_in(power) == {"alpha": 1}
    assert reported.nests(power) is None
    assert power.nests(affine) is None
    assert free.nests(affine) == {
        "intercept": affine.parameters[0],
        "slope": 1 - affine.parameters[0],
    }
    assert free.nests(reported) == {"intercept": 0, "slope": 1}
    assert power.nests(power) == {"alpha": power.parameters[0]}
    # Different outputs never nest.
    assert get_relation("acc_power").nests(reported) is None
    assert get_relation("acc_power").nests(get_relation("acc_parallel")) == {"alpha": 1}


def test_summary_and_repr() -> None:
    text = get_relation("ppl_power").summary()
    assert text.splitlines()[0].startswith("ppl_power: ")
    assert "nests ppl_reported at alpha = 1" in text
    assert "log(ppl) = (hidden_size/kept_dim)**alpha*log(ppl_dense)" in text
    assert "ppl_power" in repr(get_relation("ppl_power"))


def test_relation_is_frozen_and_validated() -> None:
    relation = get_relation("ppl_reported")
    with pytest.raises(dataclasses.FrozenInstanceError):
        relation.name = "other"  # type: ignore[misc]
    common = dict(
        title="t",
        output=ppl,
        inputs=(kept_dim, hidden_size, ppl_dense),
        parameters=(),
        origin="derived here",
        provenance="p",
        assumptions=("a",),
        dense_value=ppl_dense,
    )
    with pytest.raises(ValueError, match="snake_case"):
        Relation(name="Bad-Name", expr=ppl_dense, **common)
    with pytest.raises(ValueError, match="undeclared"):
        Relation(name="stray", expr=ppl_dense * sp.Symbol("x"), **common)
    with pytest.raises(ValueError, match="unknown parameters"):
        Relation(
            name="nest",
            expr=ppl_dense,
            nests_at={"ppl_reported": {sp.Symbol("alpha", real=True): 1}},
            **common,
        )


def test_register_a_relation_of_ones_own() -> None:
    from theory import register_relation

    relation = Relation(
        name="ppl_constant",
        title="Perplexity does not depend on d",
        output=ppl,
        expr=ppl_dense,
        inputs=(kept_dim, hidden_size, ppl_dense),
        parameters=(),
        origin="derived here",
        provenance="Derived here, for this test.",
        assumptions=("none",),
        dense_value=ppl_dense,
    )
    try:
        register_relation(relation)
        assert get_relation("ppl_constant") is relation
    finally:
        RELATIONS.unregister("ppl_constant")
    assert "ppl_constant" not in list_relations()
