from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from measure.archive import (
    ArchiveError,
    cell_path,
    check_same_protocol,
    open_sweep,
    read_cell,
    write_cell,
)
from measure.cell import Spectrum, build_cell
from measure.metrics import PerplexityResult
from measure.schema import PROTOCOL_ATTRS, SchemaError, validate
from measure.tasks import TaskResult


def protocol(**changes):
    attrs = {key: f"value-{key}" for key in PROTOCOL_ATTRS}
    attrs.update(
        nsamples=8,
        seed=42,
        eval_seqlen=16,
        calibration_seqlen=16,
        slice_head=False,
        tasks=["analogy_capitals"],
        library_versions={"torch": "2.13.0"},
        config_hash="c" * 64,
    )
    attrs.update(created="2026-12-04T00:00:00Z", cell_seconds=1.5)
    attrs.pop("schema_version")
    attrs.update(changes)
    return attrs


def make_cell(kept_dim=6, hidden=8, seed=0, **attr_changes):
    rng = np.random.default_rng(seed)
    nll = rng.uniform(2, 3, size=5)
    ppl = PerplexityResult(float(np.exp(nll.mean())), nll, rng.uniform(0, 5, (5, 15)), 16)
    correct = rng.integers(0, 2, 7).astype(np.int8)
    tasks = {
        "analogy_capitals": TaskResult(
            "analogy_capitals",
            "acc",
            float(correct.mean()),
            tuple(f"q{i}" for i in range(7)),
            correct,
            correct,
            1 - correct,
        )
    }
    eig = np.sort(rng.uniform(0, 1, (3, hidden)), axis=1)[:, ::-1]
    spectrum = Spectrum(("embed", "layer.0.mid", "layer.0.out"), eig, (kept_dim,) * 3)
    flow = {
        "residual_norm": rng.uniform(1, 2, 2),
        "residual_norm_dense": rng.uniform(1, 2, 2),
        "residual_rel_error": rng.uniform(0, 1, 2),
        "residual_cosine": rng.uniform(0, 1, 2),
        "kl_divergence": 0.1,
        "window_kl_divergence": rng.uniform(0, 0.2, 5),
        "top1_agreement": 0.9,
        "entropy": 2.0,
        "entropy_dense": 1.9,
        "logit_scale": 0.95,
    }
    return build_cell(
        model="tiny",
        hidden_size=hidden,
        kept_dim=kept_dim,
        ppl=ppl,
        attrs=protocol(**attr_changes),
        tasks=tasks,
        spectrum=spectrum,
        flow=flow,
    )


def test_cell_is_labelled():
    ds = make_cell()
    validate(ds)
    assert int(ds.kept_dim) == 6 and int(ds.hidden_size) == 8 and str(ds.model.values) == "tiny"
    for var in ds.data_vars.values():
        assert var.attrs["units"] and var.attrs["long_name"]
    np.testing.assert_allclose(float(ds.ppl), np.exp(ds.window_nll.mean()))
    retained = ds.eigenvalues[:, :6].sum("component") / ds.eigenvalues.sum("component")
    np.testing.assert_allclose(ds.retained_energy, retained)


def test_round_trip_is_identical(tmp_path):
    ds = make_cell()
    path = write_cell(ds, cell_path(tmp_path, "tiny", 6, "c" * 64))
    assert path.name == "tiny__d6__cccccccccccc.nc"
    back = read_cell(path)
    xr.testing.assert_identical(back, ds)
    assert not list(tmp_path.glob(".*.tmp"))


def test_schema_is_checked_on_write_and_read(tmp_path):
    ds = make_cell()
    broken = ds.copy()
    broken["ppl"].attrs.pop("units")
    with pytest.raises(SchemaError, match="'ppl' lacks the 'units'"):
        write_cell(broken, tmp_path / "x.nc")
    assert not (tmp_path / "x.nc").exists()
    # a file written by something else: readable netCDF, wrong schema
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"loss": ("step", np.arange(3.0))}).to_netcdf(foreign)
    with pytest.raises(ArchiveError, match="missing variable 'ppl'"):
        read_cell(foreign)


def test_corrupt_and_truncated_files_are_named(tmp_path):
    path = write_cell(make_cell(), tmp_path / "cell.nc")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="cell.nc cannot be read"):
        read_cell(path)
    path.unlink()
    write_cell(make_cell(), tmp_path / "a_good.nc")
    (tmp_path / "garbage.nc").write_bytes(b"this is not netCDF")
    with pytest.raises(ArchiveError, match="garbage.nc cannot be read"):
        open_sweep(tmp_path)  # a damaged file in a sweep is named, never skipped


def test_open_sweep_concatenates_along_kept_dim(tmp_path):
    for d, seed in ((8, 0), (4, 1), (6, 2)):
        write_cell(make_cell(kept_dim=d, seed=seed), tmp_path / f"tiny__d{d}.nc")
    sweep = open_sweep(tmp_path)
    assert sweep.kept_dim.values.tolist() == [4, 6, 8]
    assert sweep.ppl.dims == ("kept_dim",) and sweep.window_nll.dims == ("kept_dim", "window")
    assert "created" not in sweep.attrs and sweep.attrs["config_hash"] == "c" * 64
    lazy = open_sweep(tmp_path, lazy=True)
    assert lazy.eigenvalues.chunks is not None  # dask-backed
    np.testing.assert_allclose(lazy.ppl.values, sweep.ppl.values)


def test_mixing_protocols_is_refused_with_the_differences_named(tmp_path):
    write_cell(make_cell(kept_dim=8), tmp_path / "a.nc")
    write_cell(make_cell(kept_dim=6, seed=1, eval_seqlen=32), tmp_path / "b.nc")
    with pytest.raises(ArchiveError, match="eval_seqlen is 32 in b.nc but 16 in a.nc"):
        open_sweep(tmp_path)


def test_cell_attributes_may_differ_between_cells():
    check_same_protocol([("a", {"created": "x", "seed": 1}), ("b", {"created": "y", "seed": 1})])
