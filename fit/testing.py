"""Synthetic observations drawn from a relation with known constants (public test helpers).

Used by the test suite to check that fits recover known constants, that intervals cover
them at their nominal rate, and that tests reject false laws; usable by any other suite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fit.observations import Observations
from theory import get_relation

__all__ = ["synthetic_table", "synthetic_replicates"]


def synthetic_table(
    relation: str,
    constants: Mapping[str, float],
    *,
    model: str = "synthetic",
    hidden_size: int = 1024,
    kept_dims: Sequence[int] = (1024, 960, 896, 832, 768, 704, 640, 576, 512),
    dense_value: float = 12.0,
    noise: float = 0.02,
    stderr: bool = False,
    seed: int | np.random.Generator = 0,
    metric: str | None = None,
    chance: float | None = None,
    retained_energy: Sequence[float] | None = None,
    protocol: str = "synthetic",
) -> pd.DataFrame:
    """A table whose sliced values follow ``relation`` plus Gaussian noise on its working scale.

    The noise is ``noise`` times a standard normal added to ``ln value`` (perplexity,
    tau) or to the value (accuracy); the dense row is exact. With ``stderr=True`` the
    table states the true noise level as each row's standard error.

    Examples
    --------
    >>> t = synthetic_table("ppl_power", {"alpha": 1.0}, noise=0.0, kept_dims=(1024, 512))
    >>> [round(v, 6) for v in t.value]
    [12.0, 144.0]
    """
    rel = get_relation(relation)
    rng = np.random.default_rng(seed)
    kind = rel.output.name
    metric = metric or ("acc:synthetic" if kind == "acc" else kind)
    d = np.asarray(kept_dims, dtype=np.int64)
    inputs: dict[str, Any] = {"kept_dim": d, "hidden_size": hidden_size}
    if "ppl_dense" in rel.argnames:
        inputs["ppl_dense"] = dense_value
    if "acc_dense" in rel.argnames:
        inputs["acc_dense"] = dense_value
    if "chance" in rel.argnames:
        inputs["chance"] = chance
    if "retained_energy" in rel.argnames:
        inputs["retained_energy"] = np.asarray(retained_energy, dtype=np.float64)
    truth = np.asarray(rel.lambdify()(**inputs, **constants), dtype=np.float64)
    eps = noise * rng.standard_normal(len(d))
    eps[d == hidden_size] = 0.0
    if kind == "acc":
        value, se = truth + eps, np.full(len(d), noise)
    else:
        value, se = truth * np.exp(eps), noise * truth * np.exp(eps)
    table = pd.DataFrame(
        {
            "model": model,
            "protocol": protocol,
            "hidden_size": hidden_size,
            "kept_dim": d,
            "metric": metric,
            "value": value,
            "source": "synthetic",
        }
    )
    if stderr:
        table["stderr"] = se
    if chance is not None:
        table["chance"] = chance
    if retained_energy is not None:
        table["retained_energy"] = np.asarray(retained_energy, dtype=np.float64)
    return table


def synthetic_replicates(
    table: pd.DataFrame, *, units: int = 200, spread: float = 0.5, seed: int = 0
) -> Observations:
    """Observations with per-unit replicates consistent with each row's value.

    Perplexity rows get per-window NLL: a common window effect (the same windows are hard
    for every width, which the paired bootstrap exploits) plus independent noise, shifted
    so that ``exp(mean) == value`` exactly. Accuracy rows get 0/1 items whose mean is the
    value rounded to ``1/units``, the table's value being replaced by it.
    """
    rng = np.random.default_rng(seed)
    table = table.reset_index(drop=True)
    replicates = {}
    common = rng.normal(0.0, spread, units)
    for i, row in table.iterrows():
        key = (row.model, row.protocol, int(row.kept_dim), row.metric)
        if row.metric == "ppl":
            nll = common + rng.normal(0.0, spread / 4, units)
            nll = nll - nll.mean() + np.log(row.value)
            replicates[key] = nll
        elif row.metric.startswith("acc:"):
            k = int(round(row.value * units))
            items = np.zeros(units)
            items[rng.permutation(units)[:k]] = 1.0
            replicates[key] = items
            table.loc[i, "value"] = k / units
    return Observations(table, replicates)
