"""From measured archives to the statistics' input.

:func:`observations_from_sweep` turns a combined sweep (``measure.archive.open_sweep``) into
:class:`fit.observations.Observations` with replicates for the paired bootstrap:

* ``ppl``: the cell's perplexity; replicates are the per-window mean NLL;
* ``acc:<task>``: the accuracy under the task's reported metric; replicates are the per-item
  0/1 correctness; chance is ``1 / number of choices`` (0.25 for the 4-choice offline tasks);
* ``tau``: the logit scale of the sliced cells (the dense row is 1, an identity, not a
  measurement, and is labelled so in ``source``).

The mean retained PCA energy across junctions becomes the ``retained_energy`` covariate
(1 for the dense cell, which keeps every direction).
"""

from __future__ import annotations

from typing import Any

import numpy as np

OFFLINE_CHANCE = 0.25


def protocol_label(ds) -> str:
    """A short label of a sweep's protocol: eval corpus, seqlen and config hash prefix."""
    return f"{ds.attrs['eval_corpus']}-{ds.attrs['eval_seqlen']}/{str(ds.attrs['config_hash'])[:8]}"


def observations_from_sweep(ds) -> Any:
    """Observations (with replicates) of every cell of a combined sweep Dataset."""
    import pandas as pd

    from fit.observations import KNOWN_CHANCE, Observations

    model = str(ds.model.values)
    hidden = int(ds.hidden_size.values)
    label = protocol_label(ds)
    rows: list[dict[str, Any]] = []
    replicates: dict[tuple[str, str, int, str], np.ndarray] = {}
    for kept_dim in ds.kept_dim.values.tolist():
        cell = ds.sel(kept_dim=kept_dim)
        dense = kept_dim == hidden
        energy = 1.0 if dense else _mean_energy(cell)
        base = {
            "model": model,
            "hidden_size": hidden,
            "kept_dim": int(kept_dim),
            "protocol": label,
            "retained_energy": energy,
        }
        source = f"archive d={kept_dim}"
        rows.append({**base, "metric": "ppl", "value": float(cell.ppl), "source": source})
        replicates[(model, label, int(kept_dim), "ppl")] = np.asarray(cell.window_nll.values)
        if "accuracy" in ds:
            for task, acc in zip(ds.task.values.tolist(), cell.accuracy.values.tolist()):
                if np.isnan(acc):
                    continue
                metric = f"acc:{task}"
                chance = KNOWN_CHANCE.get(task, OFFLINE_CHANCE)
                rows.append(
                    {**base, "metric": metric, "value": acc, "source": source, "chance": chance}
                )
                mask = ds.item_task.values == task
                replicates[(model, label, int(kept_dim), metric)] = np.asarray(
                    cell.item_correct.values[mask], dtype=float
                )
        if "logit_scale" in ds:
            if dense:
                rows.append({**base, "metric": "tau", "value": 1.0, "source": "identity at d = D"})
            elif not np.isnan(float(cell.logit_scale)):
                rows.append(
                    {**base, "metric": "tau", "value": float(cell.logit_scale), "source": source}
                )
    return Observations(pd.DataFrame(rows), replicates)


def _mean_energy(cell) -> float:
    if "retained_energy" not in cell:
        return float("nan")
    values = np.asarray(cell.retained_energy.values, dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")
