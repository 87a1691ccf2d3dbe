"""Versions of installed packages, for provenance (read from metadata; nothing imported)."""

from __future__ import annotations

from collections.abc import Iterable

#: Libraries whose versions every archive records.
LIBRARIES = ("torch", "transformers", "numpy", "xarray", "lm_eval", "netCDF4")


def package_version(name: str, missing: str = "not installed") -> str:
    """Installed version of the distribution ``name``, or ``missing``."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return missing


def library_versions(names: Iterable[str] = LIBRARIES) -> dict[str, str]:
    return {name: package_version(name) for name in names}
