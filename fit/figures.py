"""Report figures (matplotlib, Agg backend), each saved as PDF and PNG."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from fit.validate import ValidationResult

__all__ = [
    "plot_groups",
    "plot_predicted_vs_measured",
    "plot_residuals",
    "plot_flow",
    "slug",
]


def slug(text: str) -> str:
    """A file-name-safe version of a label (``acc:piqa`` -> ``acc-piqa``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, directory: Path, stem: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{stem}.pdf", directory / f"{stem}.png"]
    fig.savefig(paths[0], bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", dpi=150)
    _pyplot().close(fig)
    return paths


def _out_of_sample(predictions: pd.DataFrame) -> pd.DataFrame:
    return predictions[predictions["mode"].isin(["dense", "lodo"])]


def plot_groups(result: ValidationResult, directory: Path) -> dict[str, list[Path]]:
    """Measured value against ``kept_dim`` with every relation's predictions and intervals.

    Relations without constants are drawn from the dense value alone; relations with
    constants show their leave-one-dimension-out predictions. Returns the files by group
    stem.
    """
    plt = _pyplot()
    files: dict[str, list[Path]] = {}
    measured = result.measured
    predictions = _out_of_sample(result.predictions)
    for (model, protocol, metric), cells in measured.groupby(
        ["model", "protocol", "metric"], sort=False
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        cells = cells.sort_values("kept_dim")
        y = cells.value.to_numpy()
        lower = np.where(np.isfinite(cells.ci_lower), y - cells.ci_lower, 0.0)
        upper = np.where(np.isfinite(cells.ci_upper), cells.ci_upper - y, 0.0)
        ax.errorbar(
            cells.kept_dim,
            y,
            yerr=[lower, upper],
            fmt="o",
            color="black",
            label="measured",
            zorder=5,
            capsize=3,
        )
        mine = predictions[
            (predictions.model == model)
            & (predictions.protocol == protocol)
            & (predictions.metric == metric)
        ]
        for relation, part in mine.groupby("relation", sort=False):
            part = part.sort_values("kept_dim")
            mode = part["mode"].iloc[0]
            (line,) = ax.plot(
                part.kept_dim, part.predicted, marker=".", label=f"{relation} ({mode})"
            )
            band = np.isfinite(part.ci_lower) & np.isfinite(part.ci_upper)
            if band.any():
                ax.fill_between(
                    part.kept_dim[band],
                    part.ci_lower[band],
                    part.ci_upper[band],
                    color=line.get_color(),
                    alpha=0.15,
                    linewidth=0,
                )
        if metric in ("ppl", "tau"):
            ax.set_yscale("log")
        ax.set_xlabel("kept_dim")
        ax.set_ylabel(metric)
        ax.set_title(f"{model} ({protocol}): {metric}")
        ax.legend(fontsize=7)
        stem = slug(f"{metric}_vs_kept_dim_{model}_{protocol}")
        files[stem] = _save(fig, directory, stem)
    return files


def plot_predicted_vs_measured(result: ValidationResult, directory: Path) -> list[Path]:
    """Out-of-sample predictions against measurements, one panel per metric kind."""
    plt = _pyplot()
    predictions = _out_of_sample(result.predictions)
    kinds = [
        k for k in ("ppl", "acc", "tau") if (predictions.metric.str.split(":").str[0] == k).any()
    ]
    fig, axes = plt.subplots(1, max(1, len(kinds)), figsize=(5.0 * max(1, len(kinds)), 4.4))
    axes = np.atleast_1d(axes)
    for ax, kind in zip(axes, kinds):
        part = predictions[predictions.metric.str.split(":").str[0] == kind]
        for relation, rows in part.groupby("relation", sort=False):
            ax.scatter(rows.measured, rows.predicted, s=14, label=relation)
        low = float(np.nanmin([part.measured.min(), part.predicted.min()]))
        high = float(np.nanmax([part.measured.max(), part.predicted.max()]))
        ax.plot([low, high], [low, high], color="grey", linewidth=1, linestyle="--")
        if kind != "acc":
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"measured {kind}")
        ax.set_ylabel(f"predicted {kind}")
        ax.legend(fontsize=7)
    if not kinds:
        axes[0].text(0.5, 0.5, "no predictions", ha="center", transform=axes[0].transAxes)
    return _save(fig, directory, "predicted_vs_measured")


def plot_residuals(result: ValidationResult, directory: Path) -> list[Path]:
    """Out-of-sample log errors ``ln(predicted / measured)`` against ``kept_dim``."""
    plt = _pyplot()
    predictions = _out_of_sample(result.predictions)
    metrics = list(dict.fromkeys(predictions.metric)) or ["(none)"]
    fig, axes = plt.subplots(
        len(metrics), 1, figsize=(6.4, 2.6 * len(metrics)), squeeze=False, sharex=False
    )
    for ax, metric in zip(axes[:, 0], metrics):
        part = predictions[predictions.metric == metric]
        for (model, relation), rows in part.groupby(["model", "relation"], sort=False):
            rows = rows.sort_values("kept_dim")
            ax.plot(
                rows.kept_dim,
                rows.log_error,
                marker="o",
                markersize=3,
                label=f"{model}: {relation}",
            )
        ax.axhline(0.0, color="grey", linewidth=1)
        ax.set_ylabel("log_error")
        ax.set_title(metric, fontsize=9)
        ax.legend(fontsize=6)
    axes[-1, 0].set_xlabel("kept_dim")
    return _save(fig, directory, "residuals")


def plot_flow(flow: Any, directory: Path, model: str) -> list[Path]:
    """Activation-flow curves over layers per ``kept_dim``, and eigenvalue spectra.

    Curves: every variable with dims ``(kept_dim, layer)`` or ``(kept_dim, junction)``
    (after averaging over ``window``/``token``). Spectra: every variable with a
    ``component`` dim, one line per junction or layer (log scale).
    """
    plt = _pyplot()
    files: list[Path] = []
    reducible = ("window", "token", "item")
    curves = []
    spectra = []
    for name, variable in flow.data_vars.items():
        dims = [d for d in variable.dims if d not in reducible]
        if "component" in dims:
            spectra.append(name)
        elif "kept_dim" in dims and len(dims) == 2 and ({"layer", "junction"} & set(dims)):
            curves.append(name)
    if curves:
        fig, axes = plt.subplots(len(curves), 1, figsize=(6.4, 2.6 * len(curves)), squeeze=False)
        for ax, name in zip(axes[:, 0], curves):
            variable = flow[name]
            variable = variable.mean([d for d in variable.dims if d in reducible])
            position = "layer" if "layer" in variable.dims else "junction"
            for d in variable.kept_dim.values:
                ax.plot(variable[position], variable.sel(kept_dim=d), label=f"kept_dim {int(d)}")
            ax.set_ylabel(name)
            ax.set_xlabel(position)
        axes[0, 0].legend(fontsize=6, ncol=2)
        files += _save(fig, directory, slug(f"activation_flow_{model}"))
    for name in spectra:
        variable = flow[name]
        others = [d for d in variable.dims if d not in ("component", "junction", "layer")]
        if others:
            variable = variable.isel({d: 0 for d in others})
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        position = next((d for d in ("junction", "layer") if d in variable.dims), None)
        if position is None:
            ax.plot(np.arange(1, variable.sizes["component"] + 1), variable)
        else:
            cmap = plt.get_cmap("viridis")
            count = variable.sizes[position]
            for i in range(count):
                ax.plot(
                    np.arange(1, variable.sizes["component"] + 1),
                    variable.isel({position: i}),
                    color=cmap(i / max(1, count - 1)),
                    linewidth=0.8,
                )
            ax.set_title(f"{name} per {position} (dark: first, light: last)", fontsize=9)
        ax.set_yscale("log")
        ax.set_xlabel("component")
        ax.set_ylabel(name)
        files += _save(fig, directory, slug(f"spectra_{model}_{name}"))
    return files
