"""netCDF archives: one file per (model, kept_dim) cell, written atomically.

File names are ``<model-slug>__d<kept_dim>__<config_hash[:12]>.nc`` so that a changed
protocol (a different config hash) writes new cells instead of mixing with old ones, and a
sweep resumes by skipping cells whose file exists with the same hash.

Examples
--------
>>> cell_filename("smollm2", 512, "0123456789abcdef")
'smollm2__d512__0123456789ab.nc'
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from measure.errors import ToolkitError
from measure.schema import CELL_ATTRS, PROTOCOL_ATTRS, SchemaError, validate


class ArchiveError(ToolkitError):
    """An archive file that cannot be read, is damaged, or cannot be combined."""


def model_slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", model).strip("-") or "model"


def cell_filename(model: str, kept_dim: int, config_hash: str) -> str:
    return f"{model_slug(model)}__d{int(kept_dim)}__{config_hash[:12]}.nc"


def cell_path(
    directory: str | os.PathLike[str], model: str, kept_dim: int, config_hash: str
) -> Path:
    return Path(directory) / cell_filename(model, kept_dim, config_hash)


def _encoding(ds) -> dict:
    encoding = {}
    for name, var in ds.data_vars.items():
        if var.ndim >= 1 and var.size >= 1024:
            encoding[name] = {"zlib": True, "complevel": 4}
    return encoding


def write_cell(ds, path: str | os.PathLike[str]) -> Path:
    """Validate ``ds`` and write it to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    validate(ds, source=f"the cell for {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=_encoding(ds))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_cell(path: str | os.PathLike[str]):
    """Read and validate one cell; a damaged or foreign file raises :class:`ArchiveError`."""
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"The archive {path} does not exist.")
    try:
        with xr.open_dataset(path, engine="netcdf4") as handle:
            ds = handle.load()
    except Exception as exc:  # noqa: BLE001 - netCDF4/HDF5 raise many types for damage
        raise ArchiveError(
            f"The archive {path} cannot be read ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else 'no detail'}). It is damaged "
            "or truncated; delete it and run the sweep again to recompute that cell."
        ) from None
    try:
        validate(ds, source=f"The archive {path}")
    except SchemaError as exc:
        raise ArchiveError(str(exc)) from None
    return ds


def find_cells(directory: str | os.PathLike[str]) -> list[Path]:
    """All cell files in ``directory`` (temporary files of interrupted writes excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArchiveError(f"{directory} is not a directory of archives.")
    return sorted(p for p in directory.glob("*.nc") if not p.name.startswith("."))


def protocol_of(ds) -> dict[str, object]:
    return {key: ds.attrs.get(key) for key in PROTOCOL_ATTRS}


def check_same_protocol(named: Sequence[tuple[str, dict]]) -> None:
    """Refuse to combine cells whose protocol attributes differ, naming the differences."""
    if not named:
        return
    first_name, first = named[0]
    differences: list[str] = []
    for name, protocol in named[1:]:
        for key in PROTOCOL_ATTRS:
            if _normal(protocol.get(key)) != _normal(first.get(key)):
                differences.append(
                    f"{key} is {_normal(protocol.get(key))!r} in {name} but "
                    f"{_normal(first.get(key))!r} in {first_name}"
                )
    if differences:
        shown = "; ".join(differences[:8])
        more = f" (and {len(differences) - 8} more)" if len(differences) > 8 else ""
        raise ArchiveError(
            "These archives were made under different protocols and cannot be combined: "
            f"{shown}{more}. Open cells of one protocol at a time (a sweep directory may "
            "hold several protocols; select files by their config-hash suffix)."
        )


def _normal(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def open_sweep(
    source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *, lazy: bool = False
):
    """Combine cells into one Dataset along ``kept_dim`` (sorted, dense cell last).

    ``source`` is a directory or a list of files. Every file is validated; a damaged file is
    named, never skipped. With ``lazy=True`` the data are opened with dask through
    ``xarray.open_mfdataset`` (for large sets); otherwise they are loaded.
    """
    import xarray as xr

    if isinstance(source, (str, os.PathLike)):
        paths = find_cells(source)
        if not paths:
            raise ArchiveError(f"No archives (*.nc) found in {source}.")
    else:
        paths = [Path(p) for p in source]
    cells = [(p, read_cell(p)) for p in paths]
    check_same_protocol([(p.name, protocol_of(ds)) for p, ds in cells])
    cells.sort(key=lambda pair: int(pair[1].kept_dim))
    kept = [int(ds.kept_dim) for _, ds in cells]
    if len(set(kept)) != len(kept):
        raise ArchiveError(f"Two archives hold the same kept_dim: {sorted(kept)}")
    if lazy:
        combined = xr.open_mfdataset(
            [str(p) for p, _ in cells],
            combine="nested",
            concat_dim="kept_dim",
            engine="netcdf4",
            coords="minimal",
            data_vars="all",
            compat="override",
            join="outer",
            combine_attrs="drop_conflicts",
        )
    else:
        combined = xr.concat(
            [ds for _, ds in cells],
            dim="kept_dim",
            data_vars="all",
            coords="minimal",
            compat="override",
            join="outer",
            combine_attrs="drop_conflicts",
        )
    for key in CELL_ATTRS:
        combined.attrs.pop(key, None)
    # Per-file encodings (an int dtype of a variable that the outer join filled with NaN
    # in the dense cell, say) do not describe the combined data.
    for variable in combined.variables.values():
        variable.encoding.clear()
    combined.attrs["cells"] = json.dumps([p.name for p, _ in cells])
    return combined
