"""Assemble one (model, kept_dim) cell as a labelled ``xarray.Dataset``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from measure.schema import SCHEMA_VERSION, annotate

if TYPE_CHECKING:
    from measure.metrics import PerplexityResult
    from measure.tasks import TaskResult


@dataclass(frozen=True)
class Spectrum:
    """Per-junction eigenvalues of the calibration second moment and the kept dims."""

    junctions: tuple[str, ...]
    eigenvalues: np.ndarray  # (junction, component), descending
    kept_dims: tuple[int, ...]

    def retained_energy(self) -> np.ndarray:
        from measure.slicing.pca import retained_energy

        return np.array(
            [
                retained_energy(row, k)
                for row, k in zip(self.eigenvalues, self.kept_dims, strict=True)
            ]
        )


def attr_value(value: Any) -> Any:
    """A value netCDF can store as a global attribute (JSON for containers)."""
    if isinstance(value, bool):
        return int(value)
    if value is None:
        return ""
    if isinstance(value, (int, float, str, np.integer, np.floating)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def build_cell(
    *,
    model: str,
    hidden_size: int,
    kept_dim: int,
    ppl: PerplexityResult,
    attrs: Mapping[str, Any],
    tasks: Mapping[str, TaskResult] | None = None,
    spectrum: Spectrum | None = None,
    flow: Mapping[str, Any] | None = None,
):
    """Build a cell Dataset; ``attrs`` supplies the provenance and protocol attributes."""
    import xarray as xr

    data: dict[str, tuple[Sequence[str], Any]] = {
        "ppl": ((), np.float64(ppl.ppl)),
        "window_nll": (("window",), np.asarray(ppl.window_nll, dtype=np.float64)),
    }
    coords: dict[str, Any] = {
        "model": model,
        "kept_dim": np.int64(kept_dim),
        "hidden_size": np.int64(hidden_size),
        "window": np.arange(len(ppl.window_nll)),
    }
    if ppl.token_nll is not None:
        data["token_nll"] = (("window", "token"), np.asarray(ppl.token_nll, dtype=np.float32))
        coords["token"] = np.arange(ppl.token_nll.shape[1])
    if tasks:
        names = list(tasks)
        data["accuracy"] = (("task",), np.array([tasks[t].accuracy for t in names]))
        data["accuracy_stderr"] = (("task",), np.array([tasks[t].stderr for t in names]))
        coords["task"] = np.array(names, dtype=object)
        coords["task_metric"] = ("task", np.array([tasks[t].metric for t in names], dtype=object))
        item_task = [t for t in names for _ in range(tasks[t].n_items)]
        item_id = [i for t in names for i in tasks[t].item_id]
        coords["item"] = np.arange(len(item_task))
        coords["item_task"] = ("item", np.array(item_task, dtype=object))
        coords["item_id"] = ("item", np.array(item_id, dtype=object))
        for var, field in (
            ("item_correct", "correct"),
            ("item_correct_acc", "correct_acc"),
            ("item_correct_acc_norm", "correct_acc_norm"),
        ):
            data[var] = (
                ("item",),
                np.concatenate([getattr(tasks[t], field) for t in names]).astype(np.int8),
            )
    if spectrum is not None:
        coords["junction"] = np.array(spectrum.junctions, dtype=object)
        coords["component"] = np.arange(spectrum.eigenvalues.shape[1])
        data["eigenvalues"] = (("junction", "component"), spectrum.eigenvalues.astype(np.float64))
        data["retained_energy"] = (("junction",), spectrum.retained_energy())
        data["junction_kept_dim"] = (("junction",), np.asarray(spectrum.kept_dims, dtype=np.int64))
    if flow:
        for name, value in flow.items():
            value = np.asarray(value)
            if name.startswith("residual_"):
                data[name] = (("layer",), value.astype(np.float64))
                coords.setdefault("layer", np.arange(value.shape[0]))
            elif name == "window_kl_divergence":
                # Capture runs on the first windows only; the others are NaN.
                padded = np.full(len(ppl.window_nll), np.nan)
                padded[: value.shape[0]] = value
                data[name] = (("window",), padded)
            else:
                data[name] = ((), np.float64(value))
    ds = xr.Dataset(data, coords=coords)
    annotate(ds)
    ds.attrs.update({k: attr_value(v) for k, v in attrs.items()})
    ds.attrs["schema_version"] = SCHEMA_VERSION
    return ds
