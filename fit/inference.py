"""Hypothesis tests of the theory, each reporting statistic, df, p-value, decision and n.

- :func:`nested_test`: a relation against a generalisation that nests it (e.g. the
  reported law at ``alpha = 1`` inside ``ppl_power``; the joint test ``a = 0, b = 1`` of
  the linearised form ``ln PPL / ln PPL_dense = a + b D/d`` is the reported law inside
  ``ppl_affine_free``). F test on the weighted residual sums of squares,
  ``F = ((RSS_0 - RSS_1) / q) / (RSS_1 / (n - p_1))`` with ``(q, n - p_1)`` df; exact for
  linear forms under normal errors, the usual approximation for nonlinear ones. The
  likelihood-ratio statistic ``n ln(RSS_0 / RSS_1)`` (chi-squared, ``q`` df) is reported
  alongside.
- :func:`tost`: two one-sided tests that a prediction error lies within
  ``(low, high)``; ``p = max(p_low, p_high)``, normal reference distribution for an error
  whose standard error is known (from windows or items), Student t with ``df`` otherwise.
- :func:`heterogeneity_test`: one set of constants for all models (pooled) against
  separate constants per model (the full model-interaction fit); F test with
  ``(p (M - 1), n - p M)`` df.
- :func:`adjust`: Holm or Benjamini–Hochberg control across a family of tests.

A test that rests on too few observations has ``status == "insufficient"`` and a note
saying what it lacks, instead of a number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from fit.regression import FitResult, InsufficientDataError, fit_relation

__all__ = [
    "TestResult",
    "nested_test",
    "tost",
    "heterogeneity_test",
    "adjust",
    "CORRECTIONS",
]

Correction = Literal["holm", "bh", "none"]
#: Multiple-testing corrections by their CLI name, with the statsmodels method name.
CORRECTIONS: dict[str, str | None] = {"holm": "holm", "bh": "fdr_bh", "none": None}


@dataclass
class TestResult:
    """One hypothesis test.

    ``reject`` is the decision at ``alpha`` on the raw p-value; ``reject_adjusted`` the
    decision after :func:`adjust`. For ``kind == "equivalence"`` rejecting H0 means the
    error is shown to lie within the tolerance.
    """

    __test__ = False  # not a pytest class

    name: str
    kind: str
    null: str
    alternative: str
    model: str = ""
    protocol: str = ""
    metric: str = ""
    relation: str = ""
    kept_dim: int | None = None
    statistic: float | None = None
    statistic_name: str = ""
    df: tuple[float, ...] | None = None
    pvalue: float | None = None
    nobs: int = 0
    alpha: float = 0.05
    note: str = ""
    pvalue_adjusted: float | None = None
    reject_adjusted: bool | None = None
    correction: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "tested" if self.pvalue is not None else "insufficient"

    @property
    def reject(self) -> bool | None:
        return None if self.pvalue is None else bool(self.pvalue < self.alpha)

    @property
    def decision(self) -> str:
        """The decision in words, after correction when one was applied."""
        if self.pvalue is None:
            return "insufficient data"
        reject = self.reject if self.reject_adjusted is None else self.reject_adjusted
        if self.kind == "equivalence":
            return "equivalent" if reject else "not shown equivalent"
        return "reject" if reject else "not rejected"

    def summary(self) -> str:
        if self.pvalue is None:
            return f"{self.name}: insufficient data ({self.note}); n = {self.nobs}"
        df = ", ".join(f"{d:g}" for d in self.df or ())
        adjusted = (
            f", adjusted p {self.pvalue_adjusted:.3g} ({self.correction})"
            if self.pvalue_adjusted is not None
            else ""
        )
        return (
            f"{self.name}: {self.statistic_name} = {self.statistic:.4g} (df {df}), "
            f"p = {self.pvalue:.3g}{adjusted}; n = {self.nobs}; {self.decision} at "
            f"alpha = {self.alpha:g}"
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["df"] = list(self.df) if self.df is not None else None
        out |= {"status": self.status, "reject": self.reject, "decision": self.decision}
        return out


def _insufficient(base: dict[str, Any], note: str, nobs: int) -> TestResult:
    return TestResult(**base, nobs=nobs, note=note)


def nested_test(
    restricted: FitResult,
    full: FitResult,
    *,
    alpha: float = 0.05,
    name: str = "",
    **labels: Any,
) -> TestResult:
    """F test of a restricted fit against a full fit on the same rows and weights.

    Parameters
    ----------
    restricted, full : FitResult
        Fits of the nested relation and of its generalisation, on the same observations
        with the same weights.
    alpha : float
    name : str
    **labels
        ``model``, ``protocol``, ``metric``, ``relation``, ... copied to the result.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"kept_dim": [64, 56, 48, 40, 32], "hidden_size": 64,
    ...                      "value": [10.0, 14.0, 23.0, 45.0, 130.0], "dense_value": 10.0})
    >>> t = nested_test(fit_relation("ppl_reported", rows), fit_relation("ppl_power", rows))
    >>> t.statistic_name, t.df, t.nobs
    ('F', (1.0, 3.0), 4)
    """
    q = len(full.params) - len(restricted.params)
    base = {
        "name": name or f"{restricted.relation} within {full.relation}",
        "kind": "nested",
        "null": f"{restricted.relation} holds",
        "alternative": f"{full.relation} with free constants",
        "alpha": alpha,
        **labels,
    }
    base.setdefault("relation", restricted.relation)
    n = full.nobs
    if q <= 0:
        raise ValueError("the full fit must have more constants than the restricted one")
    if restricted.nobs != full.nobs:
        raise ValueError("nested fits must rest on the same observations")
    df2 = n - len(full.params)
    if df2 < 1:
        return _insufficient(base, f"needs more than {len(full.params)} observations, has {n}", n)
    ssr0, ssr1 = restricted.ssr, full.ssr
    F = ((ssr0 - ssr1) / q) / (ssr1 / df2) if ssr1 > 0 else float("inf")
    F = max(F, 0.0)  # an NLS optimum can sit a rounding error above the restricted RSS
    lr = n * np.log(ssr0 / ssr1) if ssr1 > 0 and ssr0 > 0 else float("inf")
    return TestResult(
        **base,
        statistic=float(F),
        statistic_name="F",
        df=(float(q), float(df2)),
        pvalue=float(stats.f.sf(F, q, df2)),
        nobs=n,
        extra={
            "lr_statistic": float(lr),
            "lr_pvalue": float(stats.chi2.sf(lr, q)),
            "ssr_restricted": ssr0,
            "ssr_full": ssr1,
        },
    )


def tost(
    error: float,
    stderr: float,
    low: float,
    high: float,
    *,
    df: float | None = None,
    alpha: float = 0.05,
    nobs: int = 1,
    name: str = "",
    **labels: Any,
) -> TestResult:
    """Two one-sided tests of ``low < true error < high``.

    Parameters
    ----------
    error, stderr : float
        Estimated error and its standard error.
    low, high : float
        Equivalence margins (``low < 0 < high``).
    df : float, optional
        Degrees of freedom of ``stderr``; ``None`` for the normal distribution.
    nobs : int
        Number of observations the error rests on (windows, items or cells).

    Examples
    --------
    >>> t = tost(0.01, 0.01, -0.05, 0.05)
    >>> round(t.pvalue, 5), t.decision
    (3e-05, 'equivalent')
    """
    base = {
        "name": name or "equivalence",
        "kind": "equivalence",
        "null": f"error <= {low:g} or error >= {high:g}",
        "alternative": f"{low:g} < error < {high:g}",
        "alpha": alpha,
        **labels,
    }
    if not (np.isfinite(error) and np.isfinite(stderr)) or stderr <= 0:
        return _insufficient(base, "no standard error for the prediction error", nobs)
    if df is not None and df < 1:
        return _insufficient(base, "no degrees of freedom for the standard error", nobs)
    dist = stats.norm if df is None else stats.t(df)
    t_low = (error - low) / stderr
    t_high = (error - high) / stderr
    p_low = float(dist.sf(t_low))
    p_high = float(dist.cdf(t_high))
    if p_low >= p_high:
        statistic = t_low
    else:
        statistic = t_high
    return TestResult(
        **base,
        statistic=float(statistic),
        statistic_name="z" if df is None else "t",
        df=None if df is None else (float(df),),
        pvalue=max(p_low, p_high),
        nobs=nobs,
        extra={"error": float(error), "stderr": float(stderr), "low": low, "high": high},
    )


def heterogeneity_test(
    relation: str,
    groups: Mapping[str, pd.DataFrame],
    *,
    alpha: float = 0.05,
    weighted: bool | None = None,
    **labels: Any,
) -> TestResult:
    """Do the constants of ``relation`` differ across models?

    Fits one set of constants to the stacked rows of every model (pooled) and one set per
    model (the full model-interaction fit, whose residual sum of squares is the sum of
    the per-model ones), and compares them by an F test.

    Parameters
    ----------
    relation : str
    groups : mapping
        Model name to that model's rows (with ``dense_value``, as for
        :func:`~fit.regression.fit_relation`).
    weighted : bool, optional
        As for :func:`~fit.regression.fit_relation`; by default weighted only when every
        row of every model has a standard error.
    """
    from theory import get_relation

    p = len(get_relation(relation).parameters)
    M = len(groups)
    base = {
        "name": f"{relation}: same constants for {', '.join(groups)}",
        "kind": "heterogeneity",
        "null": "one set of constants for all models",
        "alternative": "constants differ by model",
        "relation": relation,
        "alpha": alpha,
        **labels,
    }
    if p == 0:
        raise ValueError(f"{relation} has no constants to compare")
    if M < 2:
        return _insufficient(base, "needs at least two models", 0)
    if weighted is None:
        weighted = all(
            np.all(np.isfinite(g["stderr"]) & (g["stderr"] > 0))
            for g in groups.values()
            if "stderr" in g
        ) and all("stderr" in g for g in groups.values())
    try:
        separate = [
            fit_relation(relation, rows, weighted=weighted, label=model)
            for model, rows in groups.items()
        ]
        pooled = fit_relation(
            relation, pd.concat(list(groups.values()), ignore_index=True), weighted=weighted
        )
    except InsufficientDataError as error:
        return _insufficient(base, str(error), 0)
    n = pooled.nobs
    df1, df2 = p * (M - 1), n - p * M
    if df2 < 1:
        return _insufficient(base, f"needs more than {p * M} observations, has {n}", n)
    ssr_full = sum(f.ssr for f in separate)
    F = ((pooled.ssr - ssr_full) / df1) / (ssr_full / df2) if ssr_full > 0 else float("inf")
    F = max(F, 0.0)
    return TestResult(
        **base,
        statistic=float(F),
        statistic_name="F",
        df=(float(df1), float(df2)),
        pvalue=float(stats.f.sf(F, df1, df2)),
        nobs=n,
        extra={
            "pooled": pooled.param_dict(),
            "by_model": {f.label: f.param_dict() for f in separate},
        },
    )


def adjust(
    tests: Sequence[TestResult], method: Correction = "holm", alpha: float | None = None
) -> list[TestResult]:
    """Set ``pvalue_adjusted`` and ``reject_adjusted`` across the tested members of a family.

    ``holm`` controls the family-wise error rate, ``bh`` the false discovery rate
    (Benjamini–Hochberg); ``none`` copies the raw p-values. Tests with insufficient data
    are not members of the family.
    """
    from statsmodels.stats.multitest import multipletests

    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {method!r}")
    members = [t for t in tests if t.pvalue is not None]
    if not members:
        return list(tests)
    level = alpha if alpha is not None else members[0].alpha
    pvalues = np.array([t.pvalue for t in members])
    if CORRECTIONS[method] is None:
        reject, adjusted = pvalues < level, pvalues
    else:
        reject, adjusted, _, _ = multipletests(pvalues, alpha=level, method=CORRECTIONS[method])
    for t, r, q in zip(members, reject, adjusted):
        t.pvalue_adjusted = float(q)
        t.reject_adjusted = bool(r)
        t.correction = method
    return list(tests)
