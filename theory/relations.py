"""The catalogue of dimension–performance relations, registered by name in ``RELATIONS``.

Three kinds, told apart by ``Relation.origin``:

- ``"reported"``: the perplexity law as reported for arXiv 2503.04377 (Xu, Alazraki,
  Mandic 2025). We do not have the paper's text; the form comes from secondary
  summaries of it.
- ``"candidate"``: candidate forms for the paper's accuracy relation, whose exact form
  we do not have.
- ``"derived here"``: generalisations that nest the reported law (so that "exactly as
  reported" is a nested hypothesis) and relations of our own (spectral, logit
  temperature).

Notation: ``d`` is the kept residual width (``kept_dim``), ``D`` the dense width
(``hidden_size``), ``s = 1 - d/D`` the slicing sparsity.
"""

from __future__ import annotations

import sympy as sp

from theory.registry import Registry
from theory.relation import Relation
from theory.symbols import (
    Domain,
    acc,
    acc_dense,
    alpha,
    beta,
    chance,
    eta,
    gamma,
    hidden_size,
    intercept,
    k,
    kept_dim,
    ppl,
    ppl_dense,
    retained_energy,
    slope,
    tau,
)

__all__ = ["RELATIONS", "get_relation", "list_relations", "register_relation", "PAPER"]

#: The paper the reported law is attributed to.
PAPER = "arXiv 2503.04377 (Xu, Alazraki, Mandic 2025)"

_SECONDARY = (
    "We do not have the paper's text: this form comes from secondary summaries of the "
    "paper and is not a verified transcription."
)

#: All relations, by name, in the order they are documented.
RELATIONS: Registry[Relation] = Registry("relation")


def register_relation(relation: Relation, *, overwrite: bool = False) -> Relation:
    """Add ``relation`` to :data:`RELATIONS` under its own name and return it."""
    return RELATIONS.register(relation.name, relation, overwrite=overwrite)


def get_relation(name: str) -> Relation:
    """The relation registered as ``name`` (unknown names suggest close ones).

    Examples
    --------
    >>> get_relation("ppl_reported").parameters
    ()
    """
    return RELATIONS.get(name)


def list_relations() -> list[str]:
    """Registered relation names, in documentation order.

    Examples
    --------
    >>> list_relations()[:2]
    ['ppl_reported', 'ppl_power']
    """
    return RELATIONS.names()


_d, _D = kept_dim, hidden_size
# Unevaluated ratios keep the printed equations in their usual shape (D/d, d/D).
_D_over_d = sp.UnevaluatedExpr(_D / _d)
_d_over_D = sp.UnevaluatedExpr(_d / _D)
_NONNEG = Domain(0.0, float("inf"))
_PPL_INPUTS = (_d, _D, ppl_dense)
_ACC_INPUTS = (_d, _D, acc_dense)


def _mul(*factors: sp.Expr) -> sp.Expr:
    # Keep the factor order as written; `ln` goes last so printed products read as usual.
    return sp.Mul(*factors, evaluate=False)


_DIMENSIONS = "d and D are positive integers with d <= D; s = 1 - d/D is the sparsity."
_PPL_DENSE = "PPL_dense > 1 is the dense model's perplexity on the same evaluation text."
_PROTOCOL = (
    "Perplexities are measured under one protocol (same corpus, windows and "
    "tokenizer) for every d, with the sliced model built by SliceGPT-style slicing."
)

register_relation(
    Relation(
        name="ppl_reported",
        title="Perplexity law as reported: ln PPL(d) = (D/d) ln PPL_dense",
        output=ppl,
        expr=ppl_dense ** (_D / _d),
        inputs=_PPL_INPUTS,
        parameters=(),
        origin="reported",
        provenance=(
            f"Reported for {PAPER} as ln PPL_dense / ln PPL(d) = d/D, equivalently "
            f"PPL(d) = PPL_dense^(D/d); no fitted constants. {_SECONDARY}"
        ),
        assumptions=(
            _DIMENSIONS,
            _PPL_DENSE,
            _PROTOCOL,
            "The law has no free constant: the log-perplexity scales exactly as D/d.",
        ),
        display=sp.Eq(sp.log(ppl), _mul(_D_over_d, sp.log(ppl_dense)), evaluate=False),
        dense_value=ppl_dense,
        monotone=(_d, -1),
    )
)

register_relation(
    Relation(
        name="ppl_power",
        title="Generalised perplexity law with an exponent on D/d",
        output=ppl,
        expr=ppl_dense ** ((_D / _d) ** alpha),
        inputs=_PPL_INPUTS,
        parameters=(alpha,),
        origin="derived here",
        provenance=(
            "Derived here: a one-parameter generalisation of the reported law "
            f"(ppl_reported, {PAPER}) that nests it at alpha = 1, so that 'exactly as "
            "reported' can be tested as a nested hypothesis."
        ),
        assumptions=(
            _DIMENSIONS,
            _PPL_DENSE,
            _PROTOCOL,
            "alpha is one constant per model (and corpus); alpha > 0 keeps the reported "
            "direction (perplexity grows as d shrinks).",
        ),
        display=sp.Eq(
            sp.log(ppl), _mul(sp.Pow(_D_over_d, alpha), sp.log(ppl_dense)), evaluate=False
        ),
        dense_value=ppl_dense,
        parameter_domains={alpha: _NONNEG},
        monotone=(_d, -1),
        nests_at={"ppl_reported": {alpha: 1}},
    )
)

register_relation(
    Relation(
        name="ppl_affine",
        title="Affine perplexity law in D/d with an intercept, anchored at the dense model",
        output=ppl,
        expr=ppl_dense ** (intercept + (1 - intercept) * _D / _d),
        inputs=_PPL_INPUTS,
        parameters=(intercept,),
        origin="derived here",
        provenance=(
            "Derived here: ln PPL / ln PPL_dense is affine in D/d with intercept a and "
            "slope 1 - a, so that the line passes through the dense model (d = D) for "
            f"every a. It nests the reported law (ppl_reported, {PAPER}) at a = 0."
        ),
        assumptions=(
            _DIMENSIONS,
            _PPL_DENSE,
            _PROTOCOL,
            "The dense model lies on the line: fixing the value at D/d = 1 ties the "
            "slope to the intercept, leaving one free constant a per model.",
            "a < 1 keeps the reported direction (perplexity grows as d shrinks); a = 1 "
            "makes perplexity independent of d.",
        ),
        display=sp.Eq(
            sp.log(ppl),
            _mul(intercept + _mul(1 - intercept, _D_over_d), sp.log(ppl_dense)),
            evaluate=False,
        ),
        dense_value=ppl_dense,
        parameter_domains={intercept: Domain(-float("inf"), 1.0)},
        monotone=(_d, -1),
        nests_at={"ppl_reported": {intercept: 0}},
    )
)

register_relation(
    Relation(
        name="ppl_affine_free",
        title="Affine perplexity law in D/d with free intercept and slope (not anchored)",
        output=ppl,
        expr=ppl_dense ** (intercept + slope * _D / _d),
        inputs=_PPL_INPUTS,
        parameters=(intercept, slope),
        origin="derived here",
        provenance=(
            "Derived here: ln PPL / ln PPL_dense = a + b D/d with a and b both free. It "
            "nests ppl_affine at b = 1 - a and the reported law (ppl_reported, "
            f"{PAPER}) at a = 0, b = 1."
        ),
        assumptions=(
            _DIMENSIONS,
            _PPL_DENSE,
            _PROTOCOL,
            "Not anchored: at d = D it gives PPL_dense^(a + b), which is the dense value "
            "only when a + b = 1 (the ppl_affine sub-family). Fitting it tests whether "
            "the measured dense point lies on the line through the sliced points.",
            "b > 0 keeps the reported direction (perplexity grows as d shrinks).",
        ),
        display=sp.Eq(
            sp.log(ppl),
            _mul(intercept + _mul(slope, _D_over_d), sp.log(ppl_dense)),
            evaluate=False,
        ),
        dense_value=ppl_dense,
        anchored=False,
        parameter_domains={slope: _NONNEG},
        monotone=(_d, -1),
        nests_at={
            "ppl_affine": {intercept: intercept, slope: 1 - intercept},
            "ppl_reported": {intercept: 0, slope: 1},
        },
    )
)

register_relation(
    Relation(
        name="ppl_spectral",
        title="Spectral perplexity law driven by the mean retained PCA energy",
        output=ppl,
        expr=ppl_dense ** (retained_energy ** (-beta)),
        inputs=(_d, _D, ppl_dense, retained_energy),
        parameters=(beta,),
        origin="derived here",
        provenance=(
            "Derived here: the reported law with d/D replaced by rho(d), the mean over "
            "junctions of the fraction of PCA energy (eigenvalue mass of the residual "
            "second moment) kept by the first d principal directions."
        ),
        assumptions=(
            _DIMENSIONS,
            _PPL_DENSE,
            _PROTOCOL,
            "rho(d) in (0, 1] is measured on the calibration data; it is non-decreasing "
            "in d and rho(D) = 1.",
            "beta > 0 keeps the reported direction (perplexity grows as rho shrinks).",
            "For a flat spectrum rho(d) = d/D, and beta = 1 recovers the reported law; "
            "this is a nesting through the input rho, not through a parameter.",
        ),
        display=sp.Eq(
            sp.log(ppl),
            _mul(
                sp.log(ppl_dense),
                sp.Pow(sp.Pow(retained_energy, beta, evaluate=False), -1, evaluate=False),
            ),
            evaluate=False,
        ),
        dense_point={_d: _D, retained_energy: 1},
        dense_value=ppl_dense,
        parameter_domains={beta: _NONNEG},
        monotone=(retained_energy, -1),
    )
)

_ACC_UNKNOWN = (
    f"{PAPER} states an analytical accuracy relation whose exact form we do not have; "
    "secondary summaries (not the paper's text) give it as ln(acc/acc_dense) "
    "proportional to 1 - s."
)
_ACC_DENSE = "acc_dense in (0, 1] is the dense model's accuracy on the same task items."

register_relation(
    Relation(
        name="acc_loglinear",
        title="Accuracy candidate: ln(acc/acc_dense) = k (d/D - 1)",
        output=acc,
        expr=acc_dense * sp.exp(k * (_d / _D - 1)),
        inputs=_ACC_INPUTS,
        parameters=(k,),
        origin="candidate",
        provenance=(
            f"Candidate for the paper's accuracy relation. {_ACC_UNKNOWN} This log-linear "
            "reading with a fitted k, offset so that d = D gives acc_dense, is ours."
        ),
        assumptions=(
            _DIMENSIONS,
            _ACC_DENSE,
            "k is one constant per model and task; k > 0 keeps the reported direction "
            "(accuracy falls as d shrinks).",
            "Accuracy can fall below chance under this form; see acc_chance_floor.",
        ),
        display=sp.Eq(
            sp.log(acc / acc_dense, evaluate=False), _mul(k, _d_over_D - 1), evaluate=False
        ),
        dense_value=acc_dense,
        parameter_domains={k: _NONNEG},
        monotone=(_d, 1),
    )
)

register_relation(
    Relation(
        name="acc_parallel",
        title="Accuracy candidate parallel to the perplexity law: ln acc = (D/d) ln acc_dense",
        output=acc,
        expr=acc_dense ** (_D / _d),
        inputs=_ACC_INPUTS,
        parameters=(),
        origin="candidate",
        provenance=(
            f"Candidate for the paper's accuracy relation. {_ACC_UNKNOWN} This form applies "
            "the reported perplexity law to accuracy; the analogy is ours."
        ),
        assumptions=(
            _DIMENSIONS,
            _ACC_DENSE,
            "No free constant; accuracy decays towards zero, not towards chance.",
        ),
        display=sp.Eq(sp.log(acc), _mul(_D_over_d, sp.log(acc_dense)), evaluate=False),
        dense_value=acc_dense,
        monotone=(_d, 1),
    )
)

register_relation(
    Relation(
        name="acc_power",
        title="Generalised parallel accuracy law with an exponent on D/d",
        output=acc,
        expr=acc_dense ** ((_D / _d) ** alpha),
        inputs=_ACC_INPUTS,
        parameters=(alpha,),
        origin="derived here",
        provenance=(
            "Derived here: generalises the candidate acc_parallel as ppl_power generalises "
            "the reported perplexity law; nests acc_parallel at alpha = 1."
        ),
        assumptions=(
            _DIMENSIONS,
            _ACC_DENSE,
            "alpha is one constant per model and task; alpha > 0 keeps the reported "
            "direction (accuracy falls as d shrinks).",
        ),
        display=sp.Eq(
            sp.log(acc), _mul(sp.Pow(_D_over_d, alpha), sp.log(acc_dense)), evaluate=False
        ),
        dense_value=acc_dense,
        parameter_domains={alpha: _NONNEG},
        monotone=(_d, 1),
        nests_at={"acc_parallel": {alpha: 1}},
    )
)

register_relation(
    Relation(
        name="acc_chance_floor",
        title="Accuracy candidate decaying to chance: (acc - c)/(acc_dense - c) = (d/D)^gamma",
        output=acc,
        expr=chance + (acc_dense - chance) * (_d / _D) ** gamma,
        inputs=(_d, _D, acc_dense, chance),
        parameters=(gamma,),
        origin="candidate",
        provenance=(
            f"Candidate for the paper's accuracy relation on multiple-choice tasks. "
            f"{_ACC_UNKNOWN} This form, where accuracy decays towards the chance level c "
            "rather than to zero, is ours."
        ),
        assumptions=(
            _DIMENSIONS,
            _ACC_DENSE,
            "c in [0, 1) is the task's chance accuracy (1/choices for multiple choice), "
            "known rather than fitted, and c < acc_dense.",
            "gamma is one constant per model and task; gamma > 0 keeps the reported "
            "direction (accuracy falls towards c as d shrinks).",
        ),
        display=sp.Eq(
            sp.Mul(acc - chance, sp.Pow(acc_dense - chance, -1), evaluate=False),
            sp.Pow(_d_over_D, gamma),
            evaluate=False,
        ),
        dense_value=acc_dense,
        constraints=(sp.Le(_d, _D), sp.Lt(chance, acc_dense)),
        parameter_domains={gamma: _NONNEG},
        monotone=(_d, 1),
    )
)

register_relation(
    Relation(
        name="logit_temperature",
        title="Logit temperature: z_sliced ≈ tau(d) z_dense with tau = (d/D)^eta",
        output=tau,
        expr=(_d / _D) ** eta,
        inputs=(_d, _D),
        parameters=(eta,),
        origin="derived here",
        provenance=(
            "Derived here: the sliced logits are modelled as a tempered copy of the dense "
            "ones, z_sliced ≈ tau z_dense, with tau the least-squares scale per d; "
            "(d/D)^eta is a candidate shape for tau(d)."
        ),
        assumptions=(
            _DIMENSIONS,
            "tau is measured as the least-squares scale in z_sliced ≈ tau z_dense on the "
            "evaluation tokens, so tau(D) = 1 for rotation without slicing.",
            "eta > 0 means slicing flattens the logits (tau < 1 for d < D).",
        ),
        display=sp.Eq(tau, sp.Pow(_d_over_D, eta), evaluate=False),
        dense_value=sp.Integer(1),
        parameter_domains={eta: _NONNEG},
        monotone=(_d, 1),
    )
)
