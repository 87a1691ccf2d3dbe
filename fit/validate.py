"""Validate relations against observations: predictions, errors, fits, tests, verdicts.

:func:`run_validation` is the whole analysis behind ``python -m fit validate``. For each
``(model, protocol, metric)`` group and each applicable relation:

1. **Predict.** A relation without constants predicts every sliced cell from the dense
   value alone (mode ``dense``: the paper's claim, no sliced model evaluated). A
   relation with constants is fitted to all of the group's cells (mode ``fitted``:
   in-sample, shown for reference only) and, honestly, to all cells but one kept width
   at a time, predicting the one left out (mode ``lodo``).
2. **Quantify errors.** Signed and absolute percentage error per cell, log-space RMSE and
   maximum absolute error per relation and mode (accuracy errors also in points).
3. **Test.** Each relation against every registered generalisation that nests it (F test);
   equivalence (TOST) of each out-of-sample prediction with the measurement within the
   tolerance; heterogeneity of the constants across models that share a protocol and
   metric. Each kind of test is one family (:data:`FAMILIES`) for Holm (default) or
   Benjamini–Hochberg control across models, dimensions, tasks and relations.
4. **Bootstrap.** Where replicates (per-window NLL or per-item correctness) are given,
   a paired bootstrap gives the measured values, the predictions of relations without
   constants and their errors percentile intervals, and supplies the standard error of
   the error for the equivalence test.

Verdict per relation and group: ``rejected`` when a nested test rejects it after
correction; otherwise ``equivalent`` when every out-of-sample prediction is shown
equivalent within the tolerance; otherwise ``not rejected``; ``insufficient data`` when
no test could be run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from fit.bootstrap import paired_bootstrap, percentile_interval
from fit.inference import TestResult, adjust, heterogeneity_test, nested_test, tost
from fit.observations import CellKey, Observations, metric_kind
from fit.regression import (
    FitResult,
    InsufficientDataError,
    applicable,
    fit_relation,
    fit_rows,
    predict,
    working_scale,
)
from measure.errors import UsageError
from theory import Relation, UnknownNameError, get_relation, list_relations

__all__ = ["ValidationResult", "run_validation", "group_rows", "FAMILIES"]

_ID = ["model", "protocol", "metric"]

#: Test kinds, each one family for multiple-testing control: a rejection of a relation
#: (nested), a claim that constants differ across models (heterogeneity) and a claim of
#: equivalence within the tolerance are different claims, each controlled on its own.
FAMILIES = ("nested", "heterogeneity", "equivalence")


def group_rows(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One group's rows with the ``dense_value`` column every relation reads.

    The dense value of ``tau`` is 1 by definition (the dense logits are their own scale).
    """
    rows = rows.copy()
    if metric == "tau":
        rows["dense_value"] = 1.0
    else:
        dense = rows[rows.kept_dim == rows.hidden_size]
        rows["dense_value"] = float(dense.value.iloc[0])
    return rows


@dataclass
class ValidationResult:
    """Everything :func:`run_validation` found; every table is a pandas DataFrame.

    Attributes
    ----------
    observations : Observations
    settings : dict
        ``alpha``, tolerances, correction, seed, bootstrap size, relations considered.
    measured : DataFrame
        One row per cell with ``value``, ``stderr`` and a ``1 - alpha`` interval
        (``interval``: ``bootstrap``, ``normal`` or ``none``).
    predictions : DataFrame
        One row per (group, relation, mode, kept_dim): ``measured``, ``predicted``,
        ``ci_lower``/``ci_upper``, ``pi_lower``/``pi_upper``, ``error``, ``error_pct``,
        ``abs_error_pct``, ``log_error`` (and ``error_points`` for accuracy).
    errors : DataFrame
        Error metrics per (group, relation, mode).
    fits : list of FitResult
        Constants fitted to all cells of each group.
    tests : list of TestResult
        The family of tests, with adjusted p-values.
    verdicts : DataFrame
        One row per (group, relation).
    notes : list of str
        Relations left out and why.
    """

    observations: Observations
    settings: dict[str, Any]
    measured: pd.DataFrame
    predictions: pd.DataFrame
    errors: pd.DataFrame
    fits: list[FitResult]
    tests: list[TestResult]
    verdicts: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> bool:
        """Whether any relation was rejected (the ``--strict`` exit condition)."""
        return bool((self.verdicts["verdict"] == "rejected").any())

    def tests_frame(self) -> pd.DataFrame:
        rows = [t.to_dict() for t in self.tests]
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """The compact verdict table printed by the CLI."""
        s = self.settings
        lines = [
            f"{len(self.observations)} observations, {len(self.observations.models)} model(s); "
            f"alpha {s['alpha']:g}, {s['correction']} correction within each family "
            f"({s['family_sizes']}); "
            f"tolerance ±{100 * s['ppl_tolerance']:g}% (ppl, tau), "
            f"±{100 * s['acc_tolerance']:g} points (acc)",
            "",
        ]
        v = self.verdicts
        if v.empty:
            return "\n".join([*lines, "no applicable relation", *self.notes])
        table = v[
            [
                "model",
                "metric",
                "relation",
                "mode",
                "n_cells",
                "mean_abs_error_pct",
                "max_abs_error_pct",
                "exact",
                "equivalent",
                "verdict",
            ]
        ].copy()
        if table.model.nunique() == 1 and v.protocol.nunique() == 1:
            pass
        elif v.protocol.nunique() > 1:
            table.insert(1, "protocol", v.protocol)
        for column in ("mean_abs_error_pct", "max_abs_error_pct"):
            table[column] = table[column].map(lambda x: "--" if pd.isna(x) else f"{x:.3g}")
        lines.append(table.to_string(index=False))
        if self.notes:
            lines += ["", *self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Every number of the tables, JSON-ready (NaN becomes ``None``)."""
        return _jsonable(
            {
                "settings": self.settings,
                "measured": self.measured.to_dict(orient="records"),
                "predictions": self.predictions.to_dict(orient="records"),
                "errors": self.errors.to_dict(orient="records"),
                "fits": [f.to_dict() for f in self.fits],
                "tests": [t.to_dict() for t in self.tests],
                "verdicts": self.verdicts.to_dict(orient="records"),
                "rejected": self.rejected,
                "notes": self.notes,
            }
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if value is pd.NA or value is None:
        return None
    return value


def _select_relations(relations: Sequence[str] | None) -> list[Relation]:
    names = list_relations() if relations is None else list(relations)
    out = []
    for name in names:
        try:
            out.append(get_relation(name))
        except UnknownNameError as error:
            raise UsageError(str(error)) from None
    return out


def run_validation(
    observations: Observations,
    replicates: Mapping[CellKey, Any] | None = None,
    *,
    relations: Sequence[str] | None = None,
    alpha: float = 0.05,
    ppl_tolerance: float = 0.05,
    acc_tolerance: float = 0.02,
    correction: str = "holm",
    seed: int = 0,
    n_boot: int = 2000,
) -> ValidationResult:
    """Predict, quantify errors and test every applicable relation (module docstring).

    Parameters
    ----------
    observations : Observations
    replicates : mapping, optional
        Replicates to add to ``observations`` (see :class:`~fit.observations.Observations`).
    relations : sequence of str, optional
        Relation names to consider (default: every registered relation). A nested test
        needs both of its relations in this list.
    alpha : float
        Level of every test and interval (``1 - alpha``).
    ppl_tolerance : float
        Equivalence margin for perplexity and the logit scale, relative (0.05 = ±5%).
    acc_tolerance : float
        Equivalence margin for accuracy, absolute (0.02 = ±2 points).
    correction : {"holm", "bh", "none"}
        Multiple-testing control across all tests of the run.
    seed, n_boot : int
        Seed and size of the paired bootstrap.

    Examples
    --------
    >>> table = pd.DataFrame({"model": "m", "hidden_size": 64, "metric": "ppl",
    ...                       "kept_dim": [64, 56, 48, 40, 32],
    ...                       "value": [10.0, 13.9, 21.6, 40.2, 100.5]})
    >>> result = run_validation(Observations(table), relations=["ppl_reported", "ppl_power"])
    >>> result.verdicts[["relation", "verdict"]].to_dict("records")[0]["relation"]
    'ppl_reported'
    """
    if not 0 < alpha < 1:
        raise UsageError(f"alpha must lie in (0, 1), got {alpha}")
    if ppl_tolerance <= 0 or acc_tolerance <= 0:
        raise UsageError("tolerances must be positive")
    if correction not in ("holm", "bh", "none"):
        raise UsageError(f"correction must be holm, bh or none, got {correction!r}")
    if replicates:
        merged = dict(observations.replicates)
        merged.update(replicates)
        observations = Observations(observations.table, merged)
    chosen = _select_relations(relations)
    settings = {
        "alpha": alpha,
        "ppl_tolerance": ppl_tolerance,
        "acc_tolerance": acc_tolerance,
        "correction": correction,
        "seed": seed,
        "n_boot": n_boot,
        "relations": [r.name for r in chosen],
    }
    measured_parts, prediction_parts, fits, tests, notes = [], [], [], [], []
    usable: dict[tuple[str, str, str], list[Relation]] = {}
    for index, ((model, protocol, metric), raw) in enumerate(observations.iter_groups()):
        rows = group_rows(raw, metric)
        labels = {"model": model, "protocol": protocol, "metric": metric}
        boot = _bootstrap(observations, model, protocol, metric, n_boot, seed + index)
        measured_parts.append(_measured(rows, boot, alpha))
        relations_here = []
        for relation in chosen:
            ok, why = applicable(relation, rows, metric)
            if not ok:
                if relation.output.name == metric_kind(metric):
                    notes.append(f"{relation.name} not applied to {model} {metric}: {why}")
                continue
            relations_here.append(relation)
            part, fit, part_tests = _analyse_relation(
                relation, rows, labels, boot, alpha, ppl_tolerance, acc_tolerance
            )
            if not part.empty:
                prediction_parts.append(part)
            tests += part_tests
            if fit is not None:
                fits.append(fit)
        usable[(model, protocol, metric)] = relations_here
        tests += _nested_tests(relations_here, rows, labels, alpha)
    tests += _heterogeneity_tests(observations, usable, alpha)
    for kind in FAMILIES:
        adjust([t for t in tests if t.kind == kind], correction, alpha)
    settings["n_tests"] = sum(t.pvalue is not None for t in tests)
    settings["family_sizes"] = ", ".join(
        f"{sum(t.kind == kind and t.pvalue is not None for t in tests)} {kind}" for kind in FAMILIES
    )
    predictions = (
        pd.concat(prediction_parts, ignore_index=True)
        if prediction_parts
        else (pd.DataFrame(columns=[*_ID, "relation", "mode", "kept_dim"]))
    )
    measured = pd.concat(measured_parts, ignore_index=True)
    errors = _error_metrics(predictions)
    verdicts = _verdicts(predictions, errors, tests, usable)
    return ValidationResult(
        observations=observations,
        settings=settings,
        measured=measured,
        predictions=predictions,
        errors=errors,
        fits=fits,
        tests=tests,
        verdicts=verdicts,
        notes=notes,
    )


# --- pieces -------------------------------------------------------------------------------


@dataclass
class _Boot:
    kept_dim: list[int]
    values: np.ndarray  # (cells, n_boot)
    units: int

    def row(self, d: int) -> np.ndarray:
        return self.values[self.kept_dim.index(int(d))]

    def dense(self, hidden_size: int) -> np.ndarray:
        return self.row(hidden_size)


def _bootstrap(
    observations: Observations, model: str, protocol: str, metric: str, n_boot: int, seed: int
) -> _Boot | None:
    kept, matrix = observations.replicate_matrix(model, protocol, metric)
    if matrix is None or n_boot < 1:
        return None
    values = paired_bootstrap(matrix, metric_kind(metric), n_boot=n_boot, seed=seed)
    return _Boot(kept, values, matrix.shape[1])


def _measured(rows: pd.DataFrame, boot: _Boot | None, alpha: float) -> pd.DataFrame:
    out = rows[
        [*_ID, "hidden_size", "kept_dim", "sparsity", "value", "stderr", "retained_energy"]
    ].copy()
    z = stats.norm.ppf(1 - alpha / 2)
    lower, upper, method = [], [], []
    for _, row in rows.iterrows():
        if boot is not None:
            lo, hi = percentile_interval(boot.row(row.kept_dim), alpha)
            lower.append(lo), upper.append(hi), method.append("bootstrap")
        elif np.isfinite(row.stderr):
            if metric_kind(row.metric) == "acc":
                lo, hi = row.value - z * row.stderr, row.value + z * row.stderr
            else:  # normal on the log scale, as the relations' working scale
                half = z * row.stderr / row.value
                lo, hi = row.value * np.exp(-half), row.value * np.exp(half)
            lower.append(lo), upper.append(hi), method.append("normal")
        else:
            lower.append(np.nan), upper.append(np.nan), method.append("none")
    out["ci_lower"], out["ci_upper"], out["interval"] = lower, upper, method
    return out


def _errors(kind: str, predicted: Any, measured: Any) -> dict[str, Any]:
    predicted = np.asarray(predicted, dtype=np.float64)
    measured = np.asarray(measured, dtype=np.float64)
    out = {
        "error": predicted - measured,
        "error_pct": 100.0 * (predicted / measured - 1.0),
        "log_error": np.log(predicted) - np.log(measured),
    }
    out["abs_error_pct"] = np.abs(out["error_pct"])
    if kind == "acc":
        out["error_points"] = 100.0 * (predicted - measured)
    return out


def _tolerance_error(kind: str, predicted: Any, measured: Any) -> Any:
    """The error the equivalence margin refers to: relative (ppl, tau) or absolute (acc)."""
    if kind == "acc":
        return np.asarray(predicted) - np.asarray(measured)
    return np.asarray(predicted) / np.asarray(measured) - 1.0


def _analyse_relation(
    relation: Relation,
    rows: pd.DataFrame,
    labels: dict[str, str],
    boot: _Boot | None,
    alpha: float,
    ppl_tolerance: float,
    acc_tolerance: float,
) -> tuple[pd.DataFrame, FitResult | None, list[TestResult]]:
    kind = metric_kind(labels["metric"])
    tolerance = acc_tolerance if kind == "acc" else ppl_tolerance
    scale = working_scale(relation)
    sliced = rows[rows.kept_dim < rows.hidden_size]
    parts = []
    fit = None
    if not relation.parameters:
        pred = predict(relation, rows, alpha=alpha).loc[sliced.index]
        frame = _frame(sliced, pred, relation, "dense", labels)
        if boot is not None:
            _add_bootstrap(frame, relation, sliced, boot, kind, alpha)
        parts.append(frame)
    else:
        try:
            fit = fit_relation(relation, rows, alpha=alpha, label=_label(labels))
        except InsufficientDataError:
            fit = None
        if fit is not None:
            targets = fit_rows(relation, rows)
            pred = predict(relation, targets, fit=fit, alpha=alpha)
            parts.append(_frame(targets, pred, relation, "fitted", labels))
        lodo = _lodo(relation, rows, labels, alpha)
        if lodo is not None:
            parts.append(lodo)
    if not parts:
        return pd.DataFrame(), fit, []
    frame = pd.concat(parts, ignore_index=True)

    tests = []
    for i, row in frame.iterrows():
        if row["mode"] == "fitted":
            continue
        if "boot_error_se" in frame and np.isfinite(row.get("boot_error_se", np.nan)):
            se, nobs = row["boot_error_se"], boot.units if boot else 1
        else:
            se, nobs = _delta_error_se(kind, scale, row), 1
        error = _tolerance_error(kind, row.predicted, row.measured)
        test = tost(
            float(error),
            float(se),
            -tolerance,
            tolerance,
            alpha=alpha,
            nobs=int(nobs),
            name=f"{relation.name} ({row['mode']}) within ±{_margin(kind, tolerance)} at "
            f"kept_dim {int(row.kept_dim)}",
            relation=relation.name,
            kept_dim=int(row.kept_dim),
            **labels,
        )
        test.extra["mode"] = row["mode"]
        frame.loc[i, "tost_p"] = test.pvalue if test.pvalue is not None else np.nan
        tests.append(test)
    return frame, fit, tests


def _margin(kind: str, tolerance: float) -> str:
    return f"{100 * tolerance:g} points" if kind == "acc" else f"{100 * tolerance:g}%"


def _delta_error_se(kind: str, scale: str, row: pd.Series) -> float:
    """Standard error of the tolerance error from the prediction's and measurement's."""
    se_pred = row.se_working
    se_meas = row.stderr / row.measured if scale == "log" else row.stderr
    if not np.isfinite(se_meas):
        return float("nan")
    if not np.isfinite(se_pred):
        se_pred = 0.0 if row["mode"] == "lodo" else float("nan")
    combined = np.hypot(se_pred, se_meas)
    return float(combined * row.predicted / row.measured) if kind != "acc" else float(combined)


def _label(labels: dict[str, str]) -> str:
    return f"{labels['model']} / {labels['protocol']} / {labels['metric']}"


def _frame(
    targets: pd.DataFrame, pred: pd.DataFrame, relation: Relation, mode: str, labels: dict
) -> pd.DataFrame:
    kind = metric_kind(labels["metric"])
    frame = targets[[*_ID, "hidden_size", "kept_dim", "sparsity", "stderr"]].copy()
    frame.insert(3, "relation", relation.name)
    frame.insert(4, "mode", mode)
    frame["measured"] = targets["value"].to_numpy()
    for column in ("predicted", "se_working", "ci_lower", "ci_upper", "pi_lower", "pi_upper"):
        frame[column] = pred[column].to_numpy()
    for key, values in _errors(kind, frame.predicted, frame.measured).items():
        frame[key] = values
    return frame.reset_index(drop=True)


def _lodo(
    relation: Relation, rows: pd.DataFrame, labels: dict, alpha: float
) -> pd.DataFrame | None:
    """Leave one kept width out: fit on the others, predict the one left out."""
    training = fit_rows(relation, rows)
    parts = []
    for index in rows.index[rows.kept_dim < rows.hidden_size]:
        rest = training.drop(index=index, errors="ignore")
        try:
            fit = fit_relation(relation, rest, alpha=alpha, select_rows=False)
        except InsufficientDataError:
            continue
        target = rows.loc[[index]]
        pred = predict(relation, target, fit=fit, alpha=alpha)
        parts.append(_frame(target, pred, relation, "lodo", labels))
    if not parts:
        return None
    return pd.concat(parts, ignore_index=True)


def _add_bootstrap(
    frame: pd.DataFrame,
    relation: Relation,
    sliced: pd.DataFrame,
    boot: _Boot,
    kind: str,
    alpha: float,
) -> None:
    """Percentile intervals of the prediction and its error, paired over windows/items."""
    function = relation.lambdify()
    dense = boot.dense(int(sliced.hidden_size.iloc[0]))
    lower, upper, err_se, err_lo, err_hi = [], [], [], [], []
    for _, row in sliced.iterrows():
        inputs = {
            "kept_dim": row.kept_dim,
            "hidden_size": row.hidden_size,
            f"{kind}_dense": dense,
        }
        if "chance" in relation.argnames:
            inputs["chance"] = row.chance
        if "retained_energy" in relation.argnames:
            inputs["retained_energy"] = row.retained_energy
        predicted = function(**inputs)
        error = _tolerance_error(kind, predicted, boot.row(row.kept_dim))
        lo, hi = percentile_interval(predicted, alpha)
        elo, ehi = percentile_interval(error, alpha)
        lower.append(lo), upper.append(hi)
        err_se.append(float(np.nanstd(error, ddof=1)))
        err_lo.append(elo), err_hi.append(ehi)
    frame["ci_lower"], frame["ci_upper"] = lower, upper
    frame["boot_error_se"] = err_se
    frame["boot_error_lower"], frame["boot_error_upper"] = err_lo, err_hi
    frame["interval"] = "bootstrap"


def _nested_tests(
    relations: list[Relation], rows: pd.DataFrame, labels: dict, alpha: float
) -> list[TestResult]:
    tests = []
    for full in relations:
        for restricted in relations:
            values = full.nests(restricted)
            if values is None or len(full.parameters) <= len(restricted.parameters):
                continue
            training = fit_rows(full, rows)
            at = ", ".join(f"{k} = {v}" for k, v in values.items())
            name = f"{restricted.name} within {full.name} ({at})"
            try:
                fit1 = fit_relation(full, training, select_rows=False)
                fit0 = fit_relation(restricted, training, select_rows=False)
            except InsufficientDataError as error:
                tests.append(
                    TestResult(
                        name=name,
                        kind="nested",
                        null=f"{restricted.name} holds",
                        alternative=f"{full.name} with free constants",
                        relation=restricted.name,
                        nobs=len(training),
                        alpha=alpha,
                        note=str(error),
                        extra={"alternative_relation": full.name},
                        **labels,
                    )
                )
                continue
            test = nested_test(fit0, fit1, alpha=alpha, name=name, **labels)
            test.extra["alternative_relation"] = full.name
            tests.append(test)
    return tests


def _heterogeneity_tests(
    observations: Observations,
    usable: dict[tuple[str, str, str], list[Relation]],
    alpha: float,
) -> list[TestResult]:
    tests = []
    by_protocol_metric: dict[tuple[str, str], list[str]] = {}
    for model, protocol, metric in usable:
        by_protocol_metric.setdefault((protocol, metric), []).append(model)
    for (protocol, metric), models in by_protocol_metric.items():
        if len(models) < 2:
            continue
        names = [r.name for r in usable[(models[0], protocol, metric)] if r.parameters]
        for name in names:
            if not all(any(r.name == name for r in usable[(m, protocol, metric)]) for m in models):
                continue
            groups = {
                m: group_rows(observations.group(m, protocol, metric), metric) for m in models
            }
            tests.append(
                heterogeneity_test(name, groups, alpha=alpha, protocol=protocol, metric=metric)
            )
    return tests


def _error_metrics(predictions: pd.DataFrame) -> pd.DataFrame:
    if predictions.empty:
        return pd.DataFrame()
    records = []
    for key, part in predictions.groupby([*_ID, "relation", "mode"], sort=False):
        record = dict(zip([*_ID, "relation", "mode"], key))
        record["n_cells"] = len(part)
        record["mean_signed_error_pct"] = float(part.error_pct.mean())
        record["mean_abs_error_pct"] = float(part.abs_error_pct.mean())
        record["max_abs_error_pct"] = float(part.abs_error_pct.max())
        record["rmse_log"] = float(np.sqrt(np.mean(part.log_error**2)))
        if "error_points" in part and part.error_points.notna().any():
            record["rmse_points"] = float(np.sqrt(np.mean(part.error_points**2)))
            record["max_abs_error_points"] = float(part.error_points.abs().max())
        records.append(record)
    return pd.DataFrame(records)


def _verdicts(
    predictions: pd.DataFrame,
    errors: pd.DataFrame,
    tests: list[TestResult],
    usable: dict[tuple[str, str, str], list[Relation]],
) -> pd.DataFrame:
    records = []
    for (model, protocol, metric), relations in usable.items():
        for relation in relations:
            mode = "lodo" if relation.parameters else "dense"
            mine = [
                t
                for t in tests
                if (t.model, t.protocol, t.metric, t.relation)
                == (model, protocol, metric, relation.name)
            ]
            nested = [t for t in mine if t.kind == "nested"]
            equivalence = [t for t in mine if t.kind == "equivalence"]
            tested = [t for t in nested if t.pvalue is not None]
            if not nested:
                exact = "n/a"
            elif not tested:
                exact = "insufficient data"
            elif any(t.reject_adjusted for t in tested):
                exact = "rejected"
            else:
                exact = "not rejected"
            shown = [t for t in equivalence if t.pvalue is not None]
            n_equivalent = sum(bool(t.reject_adjusted) for t in shown)
            if not shown:
                equivalent = "insufficient data"
            else:
                equivalent = f"{n_equivalent}/{len(shown)} cells"
            if exact == "rejected":
                verdict = "rejected"
            elif shown and n_equivalent == len(shown) and len(shown) == len(equivalence):
                verdict = "equivalent"
            elif tested or shown:
                verdict = "not rejected"
            else:
                verdict = "insufficient data"
            err = (
                errors[
                    (errors.model == model)
                    & (errors.protocol == protocol)
                    & (errors.metric == metric)
                    & (errors.relation == relation.name)
                    & (errors["mode"] == mode)
                ]
                if not errors.empty
                else errors
            )
            records.append(
                {
                    "model": model,
                    "protocol": protocol,
                    "metric": metric,
                    "relation": relation.name,
                    "mode": mode,
                    "n_cells": int(err.n_cells.iloc[0]) if len(err) else 0,
                    "mean_abs_error_pct": float(err.mean_abs_error_pct.iloc[0])
                    if len(err)
                    else np.nan,
                    "max_abs_error_pct": float(err.max_abs_error_pct.iloc[0])
                    if len(err)
                    else np.nan,
                    "rmse_log": float(err.rmse_log.iloc[0]) if len(err) else np.nan,
                    "exact": exact,
                    "equivalent": equivalent,
                    "verdict": verdict,
                }
            )
    return pd.DataFrame(records)
