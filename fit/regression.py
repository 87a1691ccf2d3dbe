"""Fit a relation's constants and predict with intervals.

Working scale
-------------
Residuals are taken on the scale where measurement noise is roughly additive: ``ln PPL``
(the mean window NLL) for perplexity, ``ln tau`` for the logit scale, and the raw
fraction for accuracy. Standard errors on that scale are ``stderr / value`` (log) or
``stderr`` (identity).

Estimation
----------
A relation whose working-scale expression is linear in its parameters (for example
``ln PPL = (a + b D/d) ln PPL_dense``) is fitted by statsmodels OLS, or WLS with weights
``1 / se^2`` when every fitted row has a standard error. Any other relation is fitted by
nonlinear least squares (:func:`scipy.optimize.least_squares`) with the relation's
analytic gradient as the Jacobian; its covariance is ``s^2 (J^T W J)^{-1}`` with
``s^2 = RSS / (n - p)``, which is what WLS reports for a linear model. Linearity is
decided symbolically (all second derivatives in the parameters vanish).

Only the sliced rows (``kept_dim < hidden_size``) inform the constants. The dense value
enters every relation as an input, so the dense row carries no noise of its own relative
to the relation: an anchored relation reproduces it exactly, and for one that is not
anchored (``ppl_affine_free``) including it would add a noise-free point to a fit that
assumes equal noise everywhere, biasing the residual variance and the intervals. Whether
the dense point lies on the fitted line is instead the nested test of the anchored
relation (``ppl_affine``) within the free one.

Intervals
---------
Confidence intervals of a prediction use the delta method on the working scale, through
the relation's gradient in its parameters (:meth:`theory.Relation.variance`) and its
derivative in the dense input (whose standard error the table may give); prediction
intervals add the residual variance ``s^2`` of the fit (or, for a relation without
constants, the target cell's measurement variance). Intervals are mapped back through
``exp`` on the log scale, so they are asymmetric and stay positive.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import sympy as sp
from scipy import optimize, stats

from theory import Relation, get_relation
from theory.symbols import acc, chance, hidden_size, kept_dim, retained_energy

__all__ = [
    "FitResult",
    "InsufficientDataError",
    "Scale",
    "applicable",
    "fit_relation",
    "fit_rows",
    "predict",
    "relation_inputs",
    "working_scale",
    "to_working",
]

Scale = Literal["log", "identity"]


class InsufficientDataError(ValueError):
    """Too few observations for the requested estimate or test."""


def working_scale(relation: Relation) -> Scale:
    """``"identity"`` for accuracy, ``"log"`` for perplexity and the logit scale."""
    return "identity" if relation.output == acc else "log"


def to_working(values: Any, scale: Scale) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.log(values) if scale == "log" else values


def from_working(values: Any, scale: Scale) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.exp(values) if scale == "log" else values


def _relation(relation: Relation | str) -> Relation:
    return get_relation(relation) if isinstance(relation, str) else relation


def _dense_symbol(relation: Relation) -> sp.Symbol | None:
    """The input that carries the dense measurement (``ppl_dense``, ``acc_dense``)."""
    value = relation.dense_value
    return value if isinstance(value, sp.Symbol) and value in relation.inputs else None


def relation_inputs(relation: Relation, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """The relation's inputs for each row, by keyword.

    ``rows`` needs ``kept_dim`` and ``hidden_size``, and, as the relation requires,
    ``dense_value`` (the group's dense measurement on every row), ``chance`` and
    ``retained_energy``.
    """
    columns = {kept_dim: "kept_dim", hidden_size: "hidden_size"}
    columns[chance] = "chance"
    columns[retained_energy] = "retained_energy"
    dense = _dense_symbol(relation)
    out = {}
    for symbol in relation.inputs:
        column = "dense_value" if symbol == dense else columns.get(symbol)
        if column is None or column not in rows:
            raise InsufficientDataError(f"{relation.name} needs the input {symbol}")
        out[symbol.name] = rows[column].to_numpy(dtype=np.float64)
    return out


def fit_rows(relation: Relation, rows: pd.DataFrame) -> pd.DataFrame:
    """The rows that inform the relation's constants: the sliced ones (module docstring)."""
    return rows[rows.kept_dim < rows.hidden_size]


def applicable(relation: Relation, rows: pd.DataFrame, metric: str) -> tuple[bool, str]:
    """Whether ``relation`` applies to the rows of one group, and why not.

    ``rows`` are one group's rows with a ``dense_value`` column.
    """
    from fit.observations import metric_kind

    if relation.output.name != metric_kind(metric):
        return False, f"predicts {relation.output}, not {metric}"
    try:
        inputs = relation_inputs(relation, rows)
    except InsufficientDataError as error:
        return False, str(error)
    for name, values in inputs.items():
        if np.isnan(values).any():
            return False, f"needs {name} on every row"
    try:
        relation.check(**inputs)
    except ValueError as error:
        return False, str(error)
    return True, ""


@functools.cache
def _working_expr(relation: Relation) -> sp.Expr:
    expr = relation.expr
    if working_scale(relation) == "log":
        expr = sp.expand_log(sp.log(expr), force=True)
    return expr


@functools.cache
def _linear_design(relation: Relation) -> tuple[Any, list[Any]] | None:
    """``(offset, columns)`` numpy functions of the inputs when linear in the parameters."""
    z = _working_expr(relation)
    params = relation.parameters
    if not params:
        return None
    for i, p in enumerate(params):
        for q in params[i:]:
            if sp.simplify(sp.diff(z, p, q)) != 0:
                return None
    at_zero = {p: 0 for p in params}
    offset = sp.lambdify(relation.inputs, z.subs(at_zero), modules="numpy")
    columns = [sp.lambdify(relation.inputs, sp.diff(z, p), modules="numpy") for p in params]
    return offset, columns


@functools.cache
def _dense_derivative(relation: Relation) -> Any:
    """Derivative of the working-scale output in the dense input, as a numpy function."""
    dense = _dense_symbol(relation)
    if dense is None:
        return None
    z = _working_expr(relation)
    return sp.lambdify(relation.inputs + relation.parameters, sp.diff(z, dense), "numpy")


def _start(relation: Relation) -> np.ndarray:
    """Start values: the parameter values at which the relation nests another, else 1."""
    start = {p: 1.0 for p in relation.parameters}
    for values in relation.nests_at.values():
        for p, v in values.items():
            if v.is_number:
                start[p] = float(v)
    return np.array([start[p] for p in relation.parameters])


def _broadcast(value: Any, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()


@dataclass
class FitResult:
    """Constants of one relation fitted to one group (or a pooled set) of observations.

    Attributes
    ----------
    relation : str
        Relation name.
    label : str
        What was fitted, e.g. ``"smollm2 / enwiki / ppl"``.
    method : {"OLS", "WLS", "NLS", "none"}
        ``"none"`` for a relation without constants (residuals only).
    scale : {"log", "identity"}
        Working scale of the residuals.
    param_names : tuple of str
    params, bse : numpy.ndarray
        Estimates and standard errors.
    cov : numpy.ndarray
        Covariance of the estimates (NaN when ``df_resid < 1``).
    nobs, df_resid : int
    ssr : float
        Weighted residual sum of squares on the working scale.
    kept_dim : numpy.ndarray
        The kept widths of the fitted rows.
    residuals, weights : numpy.ndarray
        Working-scale residuals ``y - fitted`` and the weights used (ones for OLS).
    alpha : float
        Level of the reported confidence intervals (``1 - alpha``).
    """

    relation: str
    label: str
    method: str
    scale: Scale
    param_names: tuple[str, ...]
    params: np.ndarray
    bse: np.ndarray
    cov: np.ndarray
    nobs: int
    df_resid: int
    ssr: float
    kept_dim: np.ndarray
    residuals: np.ndarray
    weights: np.ndarray
    alpha: float = 0.05
    converged: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sigma2(self) -> float:
        """Residual variance ``s^2 = RSS / df_resid`` (NaN without residual df)."""
        return self.ssr / self.df_resid if self.df_resid > 0 else float("nan")

    @property
    def has_intervals(self) -> bool:
        return self.df_resid > 0 and bool(np.all(np.isfinite(self.bse)))

    def conf_int(self, alpha: float | None = None) -> np.ndarray:
        """``(p, 2)`` t-based confidence intervals (NaN when ``df_resid < 1``)."""
        level = self.alpha if alpha is None else alpha
        if not self.has_intervals:
            return np.full((len(self.params), 2), np.nan)
        q = stats.t.ppf(1 - level / 2, self.df_resid)
        return np.column_stack([self.params - q * self.bse, self.params + q * self.bse])

    def param_dict(self) -> dict[str, float]:
        return dict(zip(self.param_names, map(float, self.params)))

    def diagnostics(self) -> dict[str, float | None]:
        """Residual diagnostics on the working scale (standardised by ``sqrt(w)/s``).

        ``shapiro_p``: Shapiro–Wilk normality p-value (``n >= 3``); ``durbin_watson``
        over rows sorted by ``kept_dim`` (values far from 2 suggest a systematic trend the
        relation misses); ``max_abs_std_resid``.
        """
        from statsmodels.stats.stattools import durbin_watson

        r = self.residuals * np.sqrt(self.weights)
        out: dict[str, float | None] = {
            "shapiro_p": None,
            "durbin_watson": None,
            "max_abs_std_resid": None,
        }
        if len(r) >= 3 and np.ptp(r) > 0:
            out["shapiro_p"] = float(stats.shapiro(r).pvalue)
        if len(r) >= 2 and np.any(r != 0):
            out["durbin_watson"] = float(durbin_watson(r[np.argsort(self.kept_dim)]))
        if self.df_resid > 0 and self.sigma2 > 0:
            out["max_abs_std_resid"] = float(np.max(np.abs(r)) / np.sqrt(self.sigma2))
        return out

    def summary(self) -> str:
        """A readable block: method, n, df, constants with CIs, residual diagnostics."""
        level = round(100 * (1 - self.alpha))
        lines = [
            f"{self.relation} fitted to {self.label}",
            f"  method {self.method} on the {self.scale} scale;  nobs {self.nobs};  "
            f"df_resid {self.df_resid};  s {np.sqrt(self.sigma2):.4g}",
        ]
        if not self.param_names:
            lines.append("  no constants")
        elif not self.has_intervals:
            lines.append("  too few observations for standard errors (df_resid = 0)")
        ci = self.conf_int()
        for i, name in enumerate(self.param_names):
            lines.append(
                f"  {name:<10} {self.params[i]:>10.4g}  se {self.bse[i]:.3g}  "
                f"{level}% CI [{ci[i, 0]:.4g}, {ci[i, 1]:.4g}]"
            )
        diag = self.diagnostics()
        text = ", ".join(f"{k} {v:.3g}" for k, v in diag.items() if v is not None)
        if text:
            lines.append(f"  residuals: {text}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_latex(self) -> str:
        """The constants as a booktabs table (estimate, se, CI, nobs, df_resid)."""
        from fit.latex import booktabs, fmt, tex_escape

        level = round(100 * (1 - self.alpha))
        ci = self.conf_int()
        rows = [
            [
                tex_escape(name),
                fmt(self.params[i]),
                fmt(self.bse[i]),
                f"[{fmt(ci[i, 0])}, {fmt(ci[i, 1])}]",
                str(self.nobs),
                str(self.df_resid),
            ]
            for i, name in enumerate(self.param_names)
        ]
        return booktabs(
            ["parameter", "estimate", "stderr", f"{level}\\% CI", "nobs", "df\\_resid"],
            rows,
            caption=f"{tex_escape(self.relation)} fitted to {tex_escape(self.label)} "
            f"({self.method}, {self.scale} scale).",
        )

    def to_dict(self) -> dict[str, Any]:
        ci = self.conf_int()
        return {
            "relation": self.relation,
            "label": self.label,
            "method": self.method,
            "scale": self.scale,
            "nobs": self.nobs,
            "df_resid": self.df_resid,
            "ssr": self.ssr,
            "sigma": float(np.sqrt(self.sigma2)) if self.df_resid > 0 else None,
            "kept_dim": [int(d) for d in self.kept_dim],
            "alpha": self.alpha,
            "converged": self.converged,
            "params": {
                name: {
                    "estimate": float(self.params[i]),
                    "stderr": _none(self.bse[i]),
                    "ci_lower": _none(ci[i, 0]),
                    "ci_upper": _none(ci[i, 1]),
                }
                for i, name in enumerate(self.param_names)
            },
            "diagnostics": self.diagnostics(),
            **self.extra,
        }

    def predict(self, rows: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
        """:func:`predict` with this fit's constants, covariance and residual variance."""
        return predict(get_relation(self.relation), rows, fit=self, **kwargs)


def _none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _working_se(rows: pd.DataFrame, scale: Scale) -> np.ndarray:
    se = rows["stderr"].to_numpy(dtype=np.float64) if "stderr" in rows else np.nan
    se = _broadcast(se, len(rows))
    return se / rows["value"].to_numpy(dtype=np.float64) if scale == "log" else se


def fit_relation(
    relation: Relation | str,
    rows: pd.DataFrame,
    *,
    weighted: bool | None = None,
    alpha: float = 0.05,
    label: str = "",
    select_rows: bool = True,
) -> FitResult:
    """Fit a relation's constants by least squares on its working scale.

    Parameters
    ----------
    relation : Relation or str
    rows : pandas.DataFrame
        Observations of one group (or several, stacked) with ``value`` and a
        ``dense_value`` column, plus ``stderr`` for weights.
    weighted : bool, optional
        WLS/weighted NLS with weights ``1/se^2``; by default, whenever every fitted row
        has a positive standard error.
    alpha : float
        Level of the confidence intervals.
    label : str
        What the rows are, for the summary.
    select_rows : bool
        Keep only the sliced rows (:func:`fit_rows`); pass ``False`` when ``rows`` is
        already the fitting set.

    Raises
    ------
    InsufficientDataError
        When there are fewer rows than constants.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"kept_dim": [64, 48, 32, 16], "hidden_size": 64,
    ...                      "value": [10.0, 10.0 ** (64 / 48), 100.0, 10.0 ** 4],
    ...                      "dense_value": 10.0})
    >>> fit = fit_relation("ppl_power", rows)
    >>> round(float(fit.params[0]), 6), fit.method, fit.nobs
    (1.0, 'NLS', 3)
    """
    relation = _relation(relation)
    scale = working_scale(relation)
    if select_rows:
        rows = fit_rows(relation, rows)
    n, p = len(rows), len(relation.parameters)
    if n == 0 or n < p:
        raise InsufficientDataError(
            f"{relation.name} has {p} constant(s) but only {n} observation(s) to fit them"
        )
    y = to_working(rows["value"], scale)
    se = _working_se(rows, scale)
    usable = bool(np.all(np.isfinite(se) & (se > 0)))
    if weighted is None:
        weighted = usable
    elif weighted and not usable:
        raise InsufficientDataError("weighted fit needs a positive stderr on every row")
    w = 1.0 / se**2 if weighted else np.ones(n)
    inputs = relation_inputs(relation, rows)
    kept = rows["kept_dim"].to_numpy()
    names = tuple(s.name for s in relation.parameters)
    common = {"relation": relation.name, "label": label, "scale": scale, "param_names": names}
    common |= {"nobs": n, "kept_dim": kept, "weights": w, "alpha": alpha}

    if p == 0:
        fitted = to_working(relation.lambdify()(**inputs), scale)
        r = y - fitted
        empty = np.zeros(0)
        return FitResult(
            method="none",
            params=empty,
            bse=empty,
            cov=np.zeros((0, 0)),
            df_resid=n,
            ssr=float(np.sum(w * r**2)),
            residuals=r,
            **common,
        )

    design = _linear_design(relation)
    if design is not None:
        import statsmodels.api as sm

        offset_fn, column_fns = design
        args = [inputs[s.name] for s in relation.inputs]
        offset = _broadcast(offset_fn(*args), n)
        X = np.column_stack([_broadcast(f(*args), n) for f in column_fns])
        model = sm.WLS(y - offset, X, weights=w) if weighted else sm.OLS(y - offset, X)
        res = model.fit()
        df_resid = n - p
        cov = np.asarray(res.cov_params()) if df_resid > 0 else np.full((p, p), np.nan)
        params = np.asarray(res.params, dtype=np.float64)
        residuals = y - offset - X @ params
        return FitResult(
            method="WLS" if weighted else "OLS",
            params=params,
            bse=np.sqrt(np.diag(cov)),
            cov=cov,
            df_resid=df_resid,
            ssr=float(np.sum(w * residuals**2)),
            residuals=residuals,
            **common,
        )

    function = relation.lambdify()
    gradient = relation.gradient().function
    sqrt_w = np.sqrt(w)

    def values(theta: np.ndarray) -> np.ndarray:
        return _broadcast(function(**inputs, **dict(zip(names, theta))), n)

    def residual(theta: np.ndarray) -> np.ndarray:
        return sqrt_w * (y - to_working(values(theta), scale))

    def jacobian(theta: np.ndarray) -> np.ndarray:
        g = np.asarray(gradient(**inputs, **dict(zip(names, theta)))).reshape(n, p)
        if scale == "log":
            g = g / values(theta)[:, None]
        return -sqrt_w[:, None] * g

    solution = optimize.least_squares(
        residual, _start(relation), jac=jacobian, method="lm" if n >= p else "trf"
    )
    params = solution.x
    r = residual(params) / sqrt_w
    ssr = float(np.sum(w * r**2))
    df_resid = n - p
    J = jacobian(params)
    cov = np.full((p, p), np.nan)
    if df_resid > 0:
        try:
            cov = np.linalg.inv(J.T @ J) * (ssr / df_resid)
        except np.linalg.LinAlgError:
            pass
    return FitResult(
        method="NLS",
        params=params,
        bse=np.sqrt(np.diag(cov)),
        cov=cov,
        df_resid=df_resid,
        ssr=ssr,
        residuals=r,
        converged=bool(solution.success),
        **common,
    )


def predict(
    relation: Relation | str,
    rows: pd.DataFrame,
    *,
    fit: FitResult | None = None,
    params: Sequence[float] | None = None,
    alpha: float = 0.05,
    dense_stderr: float | None = None,
) -> pd.DataFrame:
    """Predict the output for each row, with confidence and prediction intervals.

    Parameters
    ----------
    relation : Relation or str
    rows : pandas.DataFrame
        Inputs per row (``kept_dim``, ``hidden_size``, ``dense_value``, and as needed
        ``chance``, ``retained_energy``); ``stderr``/``value`` of the target cells, if
        present, widen the prediction interval of a relation without constants.
    fit : FitResult, optional
        Fitted constants with their covariance and residual variance.
    params : sequence of float, optional
        Constants without uncertainty (when no ``fit`` is given).
    alpha : float
        ``1 - alpha`` intervals.
    dense_stderr : float, optional
        Standard error of the dense measurement; by default the ``stderr`` of the dense
        row if ``rows`` holds it.

    Returns
    -------
    pandas.DataFrame
        ``predicted``, ``se_working``, ``ci_lower``, ``ci_upper``, ``pi_lower``,
        ``pi_upper`` (NaN where an interval is not defined), indexed like ``rows``.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"kept_dim": [48], "hidden_size": [64], "dense_value": [8.0]})
    >>> out = predict("ppl_reported", rows, dense_stderr=0.1)
    >>> round(float(out.predicted.iloc[0]), 3)
    16.0
    >>> bool(out.ci_lower.iloc[0] < 16.0 < out.ci_upper.iloc[0])
    True
    """
    relation = _relation(relation)
    scale = working_scale(relation)
    n = len(rows)
    names = tuple(s.name for s in relation.parameters)
    if fit is not None:
        theta = fit.params
        cov = fit.cov
    else:
        theta = np.asarray(params if params is not None else [], dtype=np.float64)
        cov = np.zeros((len(names), len(names)))
    if len(theta) != len(names):
        raise ValueError(f"{relation.name} needs constants {names}, got {len(theta)} values")
    inputs = relation_inputs(relation, rows)
    constants = dict(zip(names, theta))
    value = _broadcast(relation.lambdify()(**inputs, **constants), n)
    z = to_working(value, scale)

    var = np.zeros(n)
    if names:
        var_raw = _broadcast(relation.variance(cov, **inputs, **constants), n)
        var = var_raw / value**2 if scale == "log" else var_raw
    if dense_stderr is None and "stderr" in rows and "value" in rows:
        dense_rows = rows[rows.kept_dim == rows.hidden_size]
        if len(dense_rows):
            dense_stderr = float(dense_rows["stderr"].iloc[0])
    derivative = _dense_derivative(relation)
    if derivative is not None and dense_stderr is not None and np.isfinite(dense_stderr):
        args = [inputs[s.name] for s in relation.inputs] + list(theta)
        slope = _broadcast(derivative(*args), n)
        var = var + (slope * dense_stderr) ** 2
    elif derivative is not None and not names:
        # Without constants the dense measurement is the only source of uncertainty.
        var = np.full(n, np.nan)
    se = np.sqrt(var)

    if fit is not None and names:
        q = stats.t.ppf(1 - alpha / 2, fit.df_resid) if fit.df_resid > 0 else np.nan
        residual_var = fit.sigma2
        if fit.method in ("WLS", "NLS") and not np.allclose(fit.weights, 1.0):
            target_se = _working_se(rows, scale) if "value" in rows else np.full(n, np.nan)
            mean_inv_w = float(np.mean(1.0 / fit.weights))
            residual_var = fit.sigma2 * np.where(np.isfinite(target_se), target_se**2, mean_inv_w)
        pi_var = var + residual_var
    else:
        q = stats.norm.ppf(1 - alpha / 2)
        target_se = _working_se(rows, scale) if "value" in rows else np.full(n, np.nan)
        target_se = np.where(
            rows.kept_dim.to_numpy() == rows.hidden_size.to_numpy(), 0.0, target_se
        )
        pi_var = var + target_se**2
    if fit is not None and names and not fit.has_intervals:
        se = np.full(n, np.nan)
        pi_var = np.full(n, np.nan)
    out = pd.DataFrame(index=rows.index)
    out["predicted"] = value
    out["se_working"] = se
    out["ci_lower"] = from_working(z - q * se, scale)
    out["ci_upper"] = from_working(z + q * se, scale)
    pi = np.sqrt(pi_var)
    out["pi_lower"] = from_working(z - q * pi, scale)
    out["pi_upper"] = from_working(z + q * pi, scale)
    return out
