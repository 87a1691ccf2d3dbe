"""Write a validation report: booktabs tables, a standalone ``report.tex``, figures, JSON.

Layout of ``out_dir``::

    report.tex              standalone; compiles with pdflatex (booktabs, graphicx only)
    summary.json            every number in the tables, the settings and the protocol
    observations.csv        the input table (plus replicates.npz and its index, and
                            flow.nc when flow data was given), so that
                            ``python -m fit report OUT_DIR`` can rebuild the report
    tables/*.tex            booktabs tables (predictions, errors, constants, tests,
                            equivalence, verdicts, flow)
    figures/*.pdf, *.png    metric against kept_dim, predicted against measured,
                            residuals, activation flow and spectra (with flow data)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fit import figures
from fit.latex import booktabs, fmt, fmt_p, tex_escape
from fit.validate import ValidationResult, _jsonable

__all__ = ["write_report", "flow_summary", "SUMMARY_VERSION"]

#: Version of the ``summary.json`` layout.
SUMMARY_VERSION = 1
_CORRECTION_NAMES = {
    "holm": "Holm (family-wise error rate)",
    "bh": "Benjamini--Hochberg (false discovery rate)",
    "none": "no correction",
}


def _h(*names: str) -> list[str]:
    return [tex_escape(n) for n in names]


def _interval(lower: Any, upper: Any) -> str:
    if lower is None or upper is None or not (np.isfinite(lower) and np.isfinite(upper)):
        return "--"
    return f"[{fmt(lower)}, {fmt(upper)}]"


def predictions_table(result: ValidationResult) -> str:
    """Predicted against measured per group, out of sample (dense or lodo mode)."""
    out = []
    p = result.predictions
    level = round(100 * (1 - result.settings["alpha"]))
    for (model, protocol, metric), part in p[p["mode"].isin(["dense", "lodo"])].groupby(
        ["model", "protocol", "metric"], sort=False
    ):
        rows = []
        for r in part.sort_values(["relation", "kept_dim"], ascending=[True, False]).itertuples():
            rows.append(
                [
                    tex_escape(r.relation),
                    tex_escape(r.mode),
                    str(int(r.kept_dim)),
                    fmt(r.measured),
                    fmt(r.predicted),
                    _interval(r.ci_lower, r.ci_upper),
                    _interval(r.pi_lower, r.pi_upper),
                    fmt(r.error_pct, 3),
                ]
            )
        out.append(
            booktabs(
                _h("relation", "mode", "kept_dim", "measured", "predicted")
                + [f"{level}\\% CI", f"{level}\\% PI", tex_escape("error_pct")],
                rows,
                caption=f"Predicted against measured {tex_escape(metric)} for "
                f"{tex_escape(model)} (protocol {tex_escape(protocol)}). Mode dense: from the "
                "dense value alone; lodo: constants fitted without the cell predicted. "
                "error\\_pct $= 100\\,(\\text{predicted}/\\text{measured} - 1)$.",
                align="llrrrrrr",
            )
        )
    return "\n\n".join(out) if out else "% no predictions\n"


def errors_table(result: ValidationResult) -> str:
    e = result.errors
    if e.empty:
        return "% no error metrics\n"
    rows = [
        [
            tex_escape(r.model),
            tex_escape(r.metric),
            tex_escape(r.relation),
            tex_escape(r.mode),
            str(int(r.n_cells)),
            fmt(r.mean_signed_error_pct, 3),
            fmt(r.mean_abs_error_pct, 3),
            fmt(r.max_abs_error_pct, 3),
            fmt(r.rmse_log, 3),
        ]
        for r in e.itertuples()
    ]
    return booktabs(
        _h(
            "model",
            "metric",
            "relation",
            "mode",
            "n_cells",
            "mean_signed_error_pct",
            "mean_abs_error_pct",
            "max_abs_error_pct",
            "rmse_log",
        ),
        rows,
        caption="Prediction errors per relation. Mode fitted is in-sample (for reference "
        "only); dense and lodo are out of sample.",
        align="llllrrrrr",
    )


def constants_table(result: ValidationResult) -> str:
    level = round(100 * (1 - result.settings["alpha"]))
    rows = []
    for f in result.fits:
        ci = f.conf_int()
        for i, name in enumerate(f.param_names):
            rows.append(
                [
                    tex_escape(f.label),
                    tex_escape(f.relation),
                    tex_escape(name),
                    fmt(f.params[i]),
                    fmt(f.bse[i], 3),
                    _interval(ci[i, 0], ci[i, 1]),
                    str(f.nobs),
                    str(f.df_resid),
                    f.method,
                ]
            )
    if not rows:
        return "% no fitted constants\n"
    return booktabs(
        _h("group", "relation", "parameter", "estimate", "stderr")
        + [f"{level}\\% CI"]
        + _h("nobs", "df_resid", "method"),
        rows,
        caption="Fitted constants (all cells of each group) with t-based confidence "
        "intervals; intervals are -- where there are no residual degrees of freedom.",
        align="lllrrrrrl",
    )


def _test_rows(tests: list) -> list[list[str]]:
    rows = []
    for t in tests:
        df = ", ".join(f"{d:g}" for d in t.df) if t.df else "--"
        statistic = (
            f"{t.statistic_name} $=$ {fmt(t.statistic, 3)}" if t.statistic is not None else "--"
        )
        rows.append(
            [
                tex_escape(t.name if not t.model else f"{t.model} {t.metric}: {t.name}"),
                statistic,
                df,
                fmt_p(t.pvalue),
                fmt_p(t.pvalue_adjusted),
                str(t.nobs),
                tex_escape(t.decision if t.pvalue is not None else f"insufficient: {t.note}"),
            ]
        )
    return rows


def tests_table(result: ValidationResult, kinds: tuple[str, ...], caption: str) -> str:
    tests = [t for t in result.tests if t.kind in kinds]
    if not tests:
        return f"% no {', '.join(kinds)} tests\n"
    return booktabs(
        _h("test", "statistic", "df", "p", "p_adjusted", "n", "decision"),
        _test_rows(tests),
        caption=caption,
        align="p{0.42\\linewidth}lrrrrl",
    )


def verdicts_table(result: ValidationResult) -> str:
    v = result.verdicts
    if v.empty:
        return "% no verdicts\n"
    rows = [
        [
            tex_escape(r.model),
            tex_escape(r.metric),
            tex_escape(r.relation),
            tex_escape(r.mode),
            fmt(r.mean_abs_error_pct, 3),
            fmt(r.max_abs_error_pct, 3),
            tex_escape(r.exact),
            tex_escape(r.equivalent),
            tex_escape(r.verdict),
        ]
        for r in v.itertuples()
    ]
    return booktabs(
        _h(
            "model",
            "metric",
            "relation",
            "mode",
            "mean_abs_error_pct",
            "max_abs_error_pct",
            "exact",
            "equivalent",
            "verdict",
        ),
        rows,
        caption="Verdicts. exact: nested tests of the relation against its generalisations "
        "(after correction); equivalent: cells whose out-of-sample prediction is shown within "
        "the tolerance (TOST, after correction).",
        align="llllrrlll",
    )


def flow_summary(flow: Any) -> pd.DataFrame:
    """Per-``kept_dim`` means of every flow variable that has a ``kept_dim`` dim.

    Variables with a ``component`` dim (spectra) are left to the figures.
    """
    columns: dict[str, Any] = {}
    for name, variable in flow.data_vars.items():
        if "kept_dim" not in variable.dims or "component" in variable.dims:
            continue
        if not np.issubdtype(variable.dtype, np.number):
            continue
        others = [d for d in variable.dims if d != "kept_dim"]
        columns[name] = variable.mean(others).to_series() if others else variable.to_series()
    if not columns:
        return pd.DataFrame()
    frame = pd.DataFrame(columns)
    frame.index.name = "kept_dim"
    return frame.sort_index(ascending=False).reset_index()


def flow_table(summary: pd.DataFrame, model: str) -> str:
    if summary.empty:
        return "% no activation-flow variables with a kept_dim dimension\n"
    rows = [
        [fmt(v) if i else str(int(v)) for i, v in enumerate(r)]
        for r in summary.itertuples(index=False)
    ]
    return booktabs(
        _h(*summary.columns),
        rows,
        caption=f"Activation-flow summary for {tex_escape(model)}: means over layers, "
        "junctions and tokens per kept\\_dim.",
    )


def _protocol_table(protocol: Mapping[str, Any]) -> str:
    rows = []
    for key, value in protocol.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        text = str(value)
        if len(text) > 70:
            text = text[:67] + "..."
        rows.append([tex_escape(key), f"\\texttt{{{tex_escape(text)}}}"])
    if not rows:
        return ""
    return booktabs(_h("protocol", "value"), rows, caption="Protocol.", align="ll")


def _document(
    result: ValidationResult,
    tables: list[str],
    figure_files: list[str],
    protocol: Mapping[str, Any],
    title: str,
) -> str:
    s = result.settings
    correction = _CORRECTION_NAMES[s["correction"]]
    body = [
        r"\documentclass[10pt]{article}",
        r"\usepackage[margin=2cm,landscape]{geometry}",
        r"\usepackage{booktabs}",
        r"\usepackage{graphicx}",
        r"\usepackage{amsmath}",
        r"\usepackage{longtable}",
        r"\setcounter{topnumber}{4}\setcounter{totalnumber}{6}",
        r"\renewcommand{\textfraction}{0.05}\renewcommand{\topfraction}{0.95}",
        rf"\title{{{tex_escape(title)}}}",
        r"\author{}",
        r"\date{}",
        r"\begin{document}",
        r"\maketitle",
        r"\section*{Settings}",
        f"Level $\\alpha = {s['alpha']:g}$; equivalence margins $\\pm{100 * s['ppl_tolerance']:g}\\%$ "
        f"(perplexity, logit scale, relative) and $\\pm{100 * s['acc_tolerance']:g}$ points "
        f"(accuracy). Multiple testing: {correction}, applied within each family of tests "
        f"({tex_escape(s['family_sizes'])}). Paired bootstrap: {s['n_boot']} resamples, seed "
        f"{s['seed']}, where replicates were given. "
        f"{len(result.observations)} observations of {len(result.observations.models)} model(s).",
    ]
    protocol_tex = _protocol_table(protocol)
    if protocol_tex:
        body.append(protocol_tex)
    body.append(r"\clearpage")
    for name in tables:
        body += [f"\\input{{tables/{name}}}", r"\clearpage"]
    if figure_files:
        body.append(r"\section*{Figures}")
        for stem in figure_files:
            body += [
                r"\begin{figure}[htbp]",
                r"\centering",
                f"\\includegraphics[width=0.8\\linewidth,height=0.8\\textheight,keepaspectratio]"
                f"{{figures/{stem}.pdf}}",
                f"\\caption{{{tex_escape(stem)}}}",
                r"\end{figure}",
                r"\clearpage",
            ]
    if result.notes:
        body.append(r"\section*{Notes}")
        body.append(r"\begin{itemize}")
        body += [f"\\item {tex_escape(n)}" for n in result.notes]
        body.append(r"\end{itemize}")
    body.append(r"\end{document}")
    return "\n".join(body) + "\n"


def write_report(
    result: ValidationResult,
    out_dir: str | Path,
    *,
    protocol: Mapping[str, Any] | None = None,
    flow: Any = None,
    title: str | None = None,
) -> list[Path]:
    """Write tables, ``report.tex``, figures, ``summary.json`` and the input table.

    Parameters
    ----------
    result : ValidationResult
    out_dir : path
        Created if missing (``reports/<model>/`` by convention).
    protocol : mapping, optional
        What produced the numbers (model id and hash, corpus, seqlen, dtype, device,
        versions, or the source of an external table); printed in the report and stored
        in ``summary.json``.
    flow : xarray.Dataset, optional
        Activation-flow data with a ``kept_dim`` dimension (see :func:`flow_summary` and
        :func:`fit.figures.plot_flow`); ``None`` leaves the flow table and figures out.
    title : str, optional

    Returns
    -------
    list of pathlib.Path
        Every file written.
    """
    out = Path(out_dir)
    tables_dir, figures_dir = out / "tables", out / "figures"
    tables_dir.mkdir(parents=True, exist_ok=True)
    protocol = dict(protocol or {})
    models = result.observations.models
    title = title or f"Dimension--performance validation: {', '.join(models)}"
    written: list[Path] = []

    tables = {
        "verdicts": verdicts_table(result),
        "predictions": predictions_table(result),
        "errors": errors_table(result),
        "constants": constants_table(result),
        "tests": tests_table(
            result,
            ("nested", "heterogeneity"),
            "Nested tests of each relation against its generalisations (F on weighted "
            "residual sums of squares; the joint test intercept $= 0$, slope $= 1$ of the "
            "linearised form is the reported law within ppl\\_affine\\_free) and "
            "heterogeneity of constants across models.",
        ),
        "equivalence": tests_table(
            result,
            ("equivalence",),
            "Equivalence (TOST) of each out-of-sample prediction with its measurement.",
        ),
    }
    flow_frame = pd.DataFrame()
    if flow is not None:
        flow_frame = flow_summary(flow)
        tables["flow"] = flow_table(flow_frame, ", ".join(models))
    for name, text in tables.items():
        path = tables_dir / f"{name}.tex"
        path.write_text(text + "\n")
        written.append(path)

    figure_stems: list[str] = []
    for stem, paths in figures.plot_groups(result, figures_dir).items():
        figure_stems.append(stem)
        written += paths
    for paths in (
        figures.plot_predicted_vs_measured(result, figures_dir),
        figures.plot_residuals(result, figures_dir),
    ):
        figure_stems.append(paths[0].stem)
        written += paths
    if flow is not None:
        paths = figures.plot_flow(flow, figures_dir, "_".join(models))
        figure_stems += list(dict.fromkeys(p.stem for p in paths))
        written += paths

    tex = out / "report.tex"
    tex.write_text(_document(result, list(tables), figure_stems, protocol, title))
    written.append(tex)
    written += result.observations.save(out)
    if flow is not None:
        # Kept so that 'python -m fit report' can redraw the flow figures.
        flow.to_netcdf(out / "flow.nc")
        written.append(out / "flow.nc")

    summary = {
        "summary_version": SUMMARY_VERSION,
        "title": title,
        "protocol": protocol,
        **result.to_dict(),
        "flow": flow_frame.to_dict(orient="records") if not flow_frame.empty else None,
        "files": sorted(str(p.relative_to(out)) for p in written),
    }
    path = out / "summary.json"
    path.write_text(json.dumps(_jsonable(summary), indent=2, allow_nan=False) + "\n")
    written.append(path)
    return written
