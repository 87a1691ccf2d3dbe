"""The input of every statistic: a tidy, validated table of observations.

The statistics never depend on how the numbers were measured. Archives of measured
cells and external tables of published numbers both become one :class:`Observations`:
one row per ``(model, protocol, kept_dim, metric)`` cell.

Columns
-------
======================= ========= ===========================================================
column                  type      meaning
======================= ========= ===========================================================
``model``               str       model name (alias, HF id or any label)
``hidden_size``         int       residual width ``D`` of the dense model
``kept_dim``            int       kept width ``d``; the dense row has ``d = D``
``metric``              str       ``ppl``, ``tau`` (logit scale) or ``acc:<task>``
``value``               float     the measured value (accuracy as a fraction in [0, 1])
``stderr``              float     its standard error, NaN when unknown
``source``              str       where the number comes from (paper, archive, ...)
``protocol``            str       label of the measuring protocol; analysis is per
                                  ``(model, protocol)``
``retained_energy``     float     mean retained PCA energy rho(d) over junctions, NaN when
                                  unknown (the dense row is 1 by definition)
``chance``              float     chance accuracy of an ``acc:`` metric, NaN when unknown
``sparsity``            float     ``1 - d/D`` (derived)
======================= ========= ===========================================================

Replicates
----------
Optional per-unit values for the paired bootstrap, keyed by
``(model, protocol, kept_dim, metric)``: per-window mean NLL for ``ppl`` (``PPL =
exp(mean)``) and per-item 0/1 correctness for ``acc:`` metrics (``acc = mean``). Within
one ``(model, protocol, metric)`` every cell holds the same windows or items in the same
order, so that resampling one set of indices pairs the dense and sliced cells.

External CSV schema
-------------------
Required columns ``model``, ``hidden_size``, ``metric``, ``value``, ``source`` and one of
``kept_dim`` or ``sparsity``; optional ``stderr``, ``protocol``, ``retained_energy`` and
``chance``. Where a row gives ``sparsity`` but no ``kept_dim``, the kept width follows
SliceGPT's rule :func:`theory.kept_dim_from_sparsity` (``int((1 - s) D)`` rounded down
to a multiple of 8), except that ``s = 0`` is the dense row ``d = D``; an explicit
``kept_dim`` always wins. Mixed protocols in one table must be labelled in a
``protocol`` column on every row.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from measure.errors import ToolkitError

__all__ = [
    "Observations",
    "ObservationError",
    "CellKey",
    "KNOWN_CHANCE",
    "COLUMNS",
    "metric_kind",
    "DEFAULT_PROTOCOL",
]

#: A cell: ``(model, protocol, kept_dim, metric)``.
CellKey = tuple[str, str, int, str]

#: Column order of :attr:`Observations.table`.
COLUMNS = (
    "model",
    "protocol",
    "metric",
    "hidden_size",
    "kept_dim",
    "sparsity",
    "value",
    "stderr",
    "retained_energy",
    "chance",
    "source",
)

#: Protocol label of tables without a ``protocol`` column (one protocol assumed).
DEFAULT_PROTOCOL = "unlabelled"

#: Chance accuracy of known multiple-choice tasks (1 / number of choices).
KNOWN_CHANCE: dict[str, float] = {
    "piqa": 0.5,
    "winogrande": 0.5,
    "arc_easy": 0.25,
    "arc_challenge": 0.25,
    "hellaswag": 0.25,
    "analogy_capitals": 0.25,
    "analogy_family": 0.25,
    "analogy_comparative": 0.25,
    "analogy_currency": 0.25,
    "next_sentence": 0.25,
}

_METRIC = re.compile(r"^(ppl|tau|acc:[a-z0-9_]+)$")
_REQUIRED = ("model", "hidden_size", "kept_dim", "metric", "value")


class ObservationError(ToolkitError):
    """An observation table or replicate set that violates the schema."""


def metric_kind(metric: str) -> str:
    """``"ppl"``, ``"acc"`` or ``"tau"``: the quantity a metric measures.

    Examples
    --------
    >>> metric_kind("acc:piqa"), metric_kind("ppl")
    ('acc', 'ppl')
    """
    return "acc" if metric.startswith("acc:") else metric


def _where(index: Any, line_numbers: bool) -> str:
    return f"line {index}" if line_numbers else f"row {index}"


class Observations:
    """A validated table of observations with optional replicates.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns as in the module docstring; ``stderr``, ``source``, ``protocol``,
        ``retained_energy`` and ``chance`` are optional. A ``sparsity`` column is
        recomputed from ``kept_dim``.
    replicates : mapping, optional
        ``(model, protocol, kept_dim, metric) -> 1-D array`` (see the module docstring).
    line_numbers : bool
        Name rows in messages by the table's index as file line numbers (``from_csv``).

    Raises
    ------
    ObservationError
        With a message naming the offending row and column.

    Examples
    --------
    >>> obs = Observations(pd.DataFrame({
    ...     "model": ["m", "m"], "hidden_size": [64, 64], "kept_dim": [64, 48],
    ...     "metric": ["ppl", "ppl"], "value": [10.0, 25.0]}))
    >>> obs.groups()
    [('m', 'unlabelled', 'ppl')]
    >>> float(obs.dense_value("m", "unlabelled", "ppl"))
    10.0
    """

    def __init__(
        self,
        table: pd.DataFrame,
        replicates: Mapping[CellKey, Any] | None = None,
        *,
        line_numbers: bool = False,
    ) -> None:
        self.table = _validate_table(table, line_numbers)
        self.replicates = _validate_replicates(self.table, replicates or {})
        self.table = _fill_stderr(self.table, self.replicates)

    # --- construction -----------------------------------------------------------------

    @classmethod
    def from_csv(cls, path: str | Path) -> Observations:
        """Read an external result table (schema in the module docstring).

        Errors name the file and its line number (the header is line 1).
        """
        path = Path(path)
        if not path.is_file():
            raise ObservationError(f"The results table {path} does not exist.")
        try:
            raw = pd.read_csv(path, skipinitialspace=True, comment="#")
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
            raise ObservationError(f"Cannot read {path} as CSV: {error}") from None
        raw.columns = [str(c).strip() for c in raw.columns]
        raw.index = raw.index + 2  # file line numbers, the header being line 1
        try:
            return cls(_from_external(raw), line_numbers=True)
        except ObservationError as error:
            raise ObservationError(f"{path}: {error}") from None

    @classmethod
    def load(cls, run_dir: str | Path) -> Observations:
        """Read what :meth:`save` wrote: ``observations.csv`` and ``replicates.npz``."""
        run_dir = Path(run_dir)
        csv = run_dir / "observations.csv"
        if not csv.is_file():
            raise ObservationError(
                f"{run_dir} holds no observations.csv; run 'python -m fit validate' first."
            )
        table = pd.read_csv(csv, dtype={"source": str, "protocol": str}, keep_default_na=False)
        for column in ("value", "stderr", "retained_energy", "chance"):
            table[column] = pd.to_numeric(table[column].replace("", np.nan))
        replicates: dict[CellKey, np.ndarray] = {}
        npz = run_dir / "replicates.npz"
        if npz.is_file():
            index = pd.read_csv(run_dir / "replicates_index.csv", keep_default_na=False)
            with np.load(npz) as arrays:
                for row in index.itertuples(index=False):
                    key = (str(row.model), str(row.protocol), int(row.kept_dim), str(row.metric))
                    replicates[key] = arrays[row.array]
        return cls(table, replicates)

    def save(self, run_dir: str | Path) -> list[Path]:
        """Write ``observations.csv`` (and ``replicates.npz`` with its index) to ``run_dir``."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        paths = [run_dir / "observations.csv"]
        self.table.to_csv(paths[0], index=False, float_format="%.17g")
        if self.replicates:
            names = {f"r{i}": key for i, key in enumerate(self.replicates)}
            np.savez_compressed(
                run_dir / "replicates.npz",
                **{name: self.replicates[key] for name, key in names.items()},
            )
            index = pd.DataFrame(
                [(name, *key) for name, key in names.items()],
                columns=["array", "model", "protocol", "kept_dim", "metric"],
            )
            index.to_csv(run_dir / "replicates_index.csv", index=False)
            paths += [run_dir / "replicates.npz", run_dir / "replicates_index.csv"]
        return paths

    # --- access --------------------------------------------------------------------------

    def groups(self) -> list[tuple[str, str, str]]:
        """``(model, protocol, metric)`` groups, in table order."""
        keys = self.table[["model", "protocol", "metric"]].drop_duplicates()
        return [tuple(k) for k in keys.itertuples(index=False)]  # type: ignore[misc]

    def group(self, model: str, protocol: str, metric: str) -> pd.DataFrame:
        """The rows of one group, sorted by ``kept_dim`` descending (dense first)."""
        t = self.table
        rows = t[(t.model == model) & (t.protocol == protocol) & (t.metric == metric)]
        return rows.sort_values("kept_dim", ascending=False).reset_index(drop=True)

    def iter_groups(self) -> Iterator[tuple[tuple[str, str, str], pd.DataFrame]]:
        for key in self.groups():
            yield key, self.group(*key)

    def dense_value(self, model: str, protocol: str, metric: str) -> float:
        """The dense model's value (the row with ``kept_dim == hidden_size``)."""
        rows = self.group(model, protocol, metric)
        dense = rows[rows.kept_dim == rows.hidden_size]
        if dense.empty:
            raise ObservationError(f"{model} ({protocol}) has no dense row for {metric}.")
        return float(dense.value.iloc[0])

    def replicate_matrix(self, model: str, protocol: str, metric: str) -> tuple[list[int], Any]:
        """``(kept_dims, array of shape (cells, units))`` when every cell has replicates."""
        rows = self.group(model, protocol, metric)
        keys = [(model, protocol, int(d), metric) for d in rows.kept_dim]
        if not keys or not all(k in self.replicates for k in keys):
            return [], None
        return [int(d) for d in rows.kept_dim], np.stack([self.replicates[k] for k in keys])

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.table.model))

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return (
            f"<Observations: {len(self.table)} rows, {len(self.models)} models, "
            f"{len(self.groups())} groups, {len(self.replicates)} replicate sets>"
        )


# --- validation -----------------------------------------------------------------------------


def _from_external(raw: pd.DataFrame) -> pd.DataFrame:
    """Apply the CSV conventions: sparsity -> kept_dim, required ``source``."""
    table = raw.copy()
    missing = [c for c in ("model", "hidden_size", "metric", "value", "source") if c not in table]
    if "kept_dim" not in table and "sparsity" not in table:
        missing.append("kept_dim (or sparsity)")
    if missing:
        raise ObservationError(
            f"missing column(s) {', '.join(missing)}; the columns are model, hidden_size, "
            "kept_dim or sparsity, metric, value, source, and optionally stderr, protocol, "
            "retained_energy, chance."
        )
    if "sparsity" in table:
        kept = table["kept_dim"] if "kept_dim" in table else pd.Series(np.nan, index=table.index)
        kept = pd.to_numeric(kept, errors="coerce").astype("float64")
        sparsity = pd.to_numeric(table["sparsity"], errors="coerce")
        hidden = pd.to_numeric(table["hidden_size"], errors="coerce")
        for line in table.index[kept.isna()]:
            s, D = sparsity[line], hidden[line]
            if pd.isna(s):
                raise ObservationError(f"line {line}: give kept_dim or sparsity.")
            if pd.isna(D) or D <= 0 or D != int(D):
                raise ObservationError(f"line {line}: hidden_size must be a positive integer.")
            if not 0.0 <= s < 1.0:
                raise ObservationError(f"line {line}: sparsity must lie in [0, 1), got {s}.")
            kept[line] = D if s == 0 else _kept_dim_from_sparsity(int(D), float(s), line)
        table["kept_dim"] = kept
    return table


def _kept_dim_from_sparsity(hidden_size: int, sparsity: float, line: Any) -> int:
    from theory import kept_dim_from_sparsity

    try:
        return kept_dim_from_sparsity(hidden_size, sparsity)
    except ValueError as error:
        raise ObservationError(f"line {line}: {error}.") from None


def _integer_column(table: pd.DataFrame, column: str, where: Any) -> pd.Series:
    values = pd.to_numeric(table[column], errors="coerce")
    for index, value in values.items():
        if pd.isna(value) or value <= 0 or value != int(value):
            raise ObservationError(
                f"{where(index)}: {column} must be a positive integer, got {table[column][index]!r}."
            )
    return values.astype("int64")


def _float_column(table: pd.DataFrame, column: str, where: Any, *, required: bool) -> pd.Series:
    if column not in table:
        return pd.Series(np.nan, index=table.index, dtype="float64")
    values = pd.to_numeric(table[column], errors="coerce").astype("float64")
    bad = values.isna() & table[column].notna() & (table[column].astype(str).str.strip() != "")
    if bad.any() or (required and values.isna().any()):
        index = values.index[bad | (values.isna() if required else bad)][0]
        raise ObservationError(
            f"{where(index)}: {column} must be a number, got {table[column][index]!r}."
        )
    return values


def _validate_table(table: pd.DataFrame, line_numbers: bool) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise ObservationError(f"observations must be a pandas DataFrame, got {type(table)}")

    def where(i: Any) -> str:
        return _where(i, line_numbers)

    missing = [c for c in _REQUIRED if c not in table]
    if missing:
        raise ObservationError(
            f"missing column(s) {', '.join(missing)}; required are {', '.join(_REQUIRED)}."
        )
    if table.empty:
        raise ObservationError("the observation table has no rows.")
    if not (line_numbers and table.index.is_unique):
        table = table.reset_index(drop=True)  # row numbers in messages count from 0
    out = pd.DataFrame(index=table.index)
    for column in ("model", "metric"):
        text = table[column].astype("string").str.strip()
        empty = text.isna() | (text == "")
        if empty.any():
            raise ObservationError(f"{where(text.index[empty][0])}: {column} is empty.")
        out[column] = text.astype(object)
    if "protocol" in table:
        protocol = table["protocol"].astype("string").str.strip()
        empty = protocol.isna() | (protocol == "")
        if empty.any():
            raise ObservationError(
                f"{where(protocol.index[empty][0])}: protocol is empty; when a table has a "
                "protocol column, every row must be labelled."
            )
        out["protocol"] = protocol.astype(object)
    else:
        out["protocol"] = DEFAULT_PROTOCOL
    for index, metric in out["metric"].items():
        if not _METRIC.match(metric):
            raise ObservationError(
                f"{where(index)}: unknown metric {metric!r}; metrics are 'ppl', 'tau' or "
                "'acc:<task>' with a lower-case task name (e.g. 'acc:piqa')."
            )
    out["hidden_size"] = _integer_column(table, "hidden_size", where)
    out["kept_dim"] = _integer_column(table, "kept_dim", where)
    too_wide = out.kept_dim > out.hidden_size
    if too_wide.any():
        i = out.index[too_wide][0]
        raise ObservationError(
            f"{where(i)}: kept_dim {out.kept_dim[i]} exceeds hidden_size {out.hidden_size[i]}."
        )
    out["sparsity"] = 1.0 - out.kept_dim / out.hidden_size
    out["value"] = _float_column(table, "value", where, required=True)
    out["stderr"] = _float_column(table, "stderr", where, required=False)
    out["retained_energy"] = _float_column(table, "retained_energy", where, required=False)
    out["chance"] = _float_column(table, "chance", where, required=False)
    out["source"] = table["source"].fillna("").astype(str).str.strip() if "source" in table else ""
    for index, row in out.iterrows():
        _check_row(row, where(index))
    sizes = out.groupby("model")["hidden_size"].nunique()
    if (sizes > 1).any():
        model = sizes.index[sizes > 1][0]
        raise ObservationError(f"model {model!r} has more than one hidden_size.")
    duplicated = out.duplicated(["model", "protocol", "kept_dim", "metric"])
    if duplicated.any():
        i = out.index[duplicated][0]
        raise ObservationError(
            f"{where(i)}: a second row for model {out.model[i]!r}, protocol "
            f"{out.protocol[i]!r}, kept_dim {out.kept_dim[i]}, metric {out.metric[i]!r}."
        )
    for (model, protocol, metric), rows in out.groupby(["model", "protocol", "metric"], sort=False):
        if metric != "tau" and not (rows.kept_dim == rows.hidden_size).any():
            raise ObservationError(
                f"model {model!r} (protocol {protocol!r}) has no dense row (kept_dim = "
                f"hidden_size = {rows.hidden_size.iloc[0]}) for {metric}; every prediction "
                "starts from the dense value."
            )
    # rho(D) = 1 by definition: every direction is kept.
    dense = out.kept_dim == out.hidden_size
    out.loc[dense & out.retained_energy.isna(), "retained_energy"] = 1.0
    tasks = out.metric.str.removeprefix("acc:")
    default_chance = tasks.map(KNOWN_CHANCE).where(out.metric.str.startswith("acc:"))
    out["chance"] = out.chance.fillna(default_chance.astype("float64"))
    return out.reset_index(drop=True)[list(COLUMNS)]


def _check_row(row: pd.Series, where: str) -> None:
    kind, value = metric_kind(row.metric), row.value
    if not np.isfinite(value):
        raise ObservationError(f"{where}: value must be finite, got {value}.")
    if kind == "ppl" and value <= 1.0:
        raise ObservationError(f"{where}: a perplexity must exceed 1, got {value}.")
    if kind == "acc" and not 0.0 <= value <= 1.0:
        hint = " (divide percentages by 100)" if 1.0 < value <= 100.0 else ""
        raise ObservationError(
            f"{where}: an accuracy must be a fraction in [0, 1], got {value}{hint}."
        )
    if kind == "tau" and value <= 0.0:
        raise ObservationError(f"{where}: tau must be positive, got {value}.")
    if not (np.isnan(row.stderr) or row.stderr >= 0.0):
        raise ObservationError(f"{where}: stderr must be non-negative, got {row.stderr}.")
    rho = row.retained_energy
    if not (np.isnan(rho) or 0.0 < rho <= 1.0):
        raise ObservationError(f"{where}: retained_energy must lie in (0, 1], got {rho}.")
    if not (np.isnan(row.chance) or 0.0 <= row.chance < 1.0):
        raise ObservationError(f"{where}: chance must lie in [0, 1), got {row.chance}.")


def _validate_replicates(
    table: pd.DataFrame, replicates: Mapping[CellKey, Any]
) -> dict[CellKey, np.ndarray]:
    cells = {
        (m, p, int(d), k): v
        for m, p, d, k, v in table[["model", "protocol", "kept_dim", "metric", "value"]].itertuples(
            index=False
        )
    }
    out: dict[CellKey, np.ndarray] = {}
    lengths: dict[tuple[str, str, str], int] = {}
    for key, array in replicates.items():
        if len(key) != 4:
            raise ObservationError(
                f"replicate key {key!r} must be (model, protocol, kept_dim, metric)."
            )
        key = (str(key[0]), str(key[1]), int(key[2]), str(key[3]))
        if key not in cells:
            raise ObservationError(f"replicates for {key} have no row in the table.")
        values = np.asarray(array, dtype=np.float64)
        if values.ndim != 1 or values.size < 2 or not np.all(np.isfinite(values)):
            raise ObservationError(
                f"replicates for {key} must be a 1-D array of at least 2 finite numbers."
            )
        kind = metric_kind(key[3])
        if kind == "tau":
            raise ObservationError(f"replicates for {key}: tau has no replicate convention.")
        if kind == "acc" and not np.all((values == 0.0) | (values == 1.0)):
            raise ObservationError(f"replicates for {key}: accuracy items must be 0 or 1.")
        implied = float(np.exp(values.mean())) if kind == "ppl" else float(values.mean())
        if not np.isclose(implied, cells[key], rtol=1e-4, atol=1e-9):
            raise ObservationError(
                f"replicates for {key} give {implied:.6g}, but the table says {cells[key]:.6g}."
            )
        group = (key[0], key[1], key[3])
        if lengths.setdefault(group, values.size) != values.size:
            raise ObservationError(
                f"replicates of {group} have different lengths; paired resampling needs the "
                "same windows or items in every cell."
            )
        out[key] = values
    return out


def _fill_stderr(table: pd.DataFrame, replicates: Mapping[CellKey, np.ndarray]) -> pd.DataFrame:
    """Standard errors from replicates where the table has none (delta method for PPL)."""
    table = table.copy()
    for i, row in table.iterrows():
        key = (row.model, row.protocol, int(row.kept_dim), row.metric)
        if key in replicates and np.isnan(row.stderr):
            units = replicates[key]
            se_mean = units.std(ddof=1) / np.sqrt(units.size)
            table.loc[i, "stderr"] = row.value * se_mean if row.metric == "ppl" else se_mean
    return table
