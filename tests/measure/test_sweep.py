from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import measure.sweep as sweep_module
from measure.archive import ArchiveError, open_sweep, read_cell
from measure.sweep import Sweep, kept_dims_for


@pytest.fixture
def config(tiny_sweep_config):
    return tiny_sweep_config


KEPT = [32, 24, 16]


def strip_cell_attrs(ds):
    ds = ds.copy()
    for key in ("created", "cell_seconds", "slicing_seconds"):
        ds.attrs.pop(key, None)
    return ds


def test_kept_dims_follow_slicegpt_rounding():
    assert kept_dims_for(576, sparsities=[0.1, 0.25]) == [576, 512, 432]
    assert kept_dims_for(32, kept_dims=[16, 16, 24]) == [32, 24, 16]
    from measure.errors import UsageError

    with pytest.raises(UsageError):
        kept_dims_for(32, kept_dims=[40])


def test_sweep_writes_one_labelled_cell_per_kept_dim(config, tmp_path):
    reports = Sweep(config, tmp_path, progress=False).run(KEPT)
    assert [r.kept_dim for r in reports] == KEPT and not any(r.skipped for r in reports)
    ds = open_sweep(tmp_path)
    assert ds.kept_dim.values.tolist() == [16, 24, 32]
    assert ds.attrs["config_hash"] == config.config_hash()
    dense = ds.sel(kept_dim=32)
    assert np.isnan(dense.kl_divergence)  # no comparison in the dense cell
    sliced = ds.sel(kept_dim=16)
    assert float(sliced.kl_divergence) > 0 and sliced.residual_rel_error.dims == ("layer",)
    assert sliced.junction_kept_dim.values[0] == 16
    assert int(read_cell(reports[1].path).attrs["parameter_count"]) > 0
    assert not list(tmp_path.glob(".dense-reference-*"))  # removed once every cell is done


def test_dense_work_is_done_once_per_sweep(config, tmp_path, monkeypatch):
    from measure import capture, data

    calls = {"reference": 0, "tokenize": 0}
    compute = capture.DenseReference.compute.__func__
    tokenize = data.tokenize_texts

    def counting_compute(cls, *args, **kwargs):
        calls["reference"] += 1
        return compute(cls, *args, **kwargs)

    def counting_tokenize(*args, **kwargs):
        calls["tokenize"] += 1
        return tokenize(*args, **kwargs)

    monkeypatch.setattr(capture.DenseReference, "compute", classmethod(counting_compute))
    monkeypatch.setattr(data, "tokenize_texts", counting_tokenize)
    Sweep(config, tmp_path, progress=False).run(KEPT)
    assert calls == {"reference": 1, "tokenize": 2}


def test_interrupted_sweep_resumes_without_losing_cells(config, tmp_path, monkeypatch):
    # Killed inside the last cell (after slicing, while capturing the flow).
    real_capture = sweep_module.Sweep._sliced_cell
    killed = {"n": 0}

    def kill_in_second_sliced_cell(self, kept_dim):
        if kept_dim == 16:
            killed["n"] += 1
            import measure.capture as capture

            monkeypatch.setattr(capture, "capture_flow", _raise_interrupt)
        return real_capture(self, kept_dim)

    monkeypatch.setattr(Sweep, "_sliced_cell", kill_in_second_sliced_cell)
    with pytest.raises(KeyboardInterrupt):
        Sweep(config, tmp_path, progress=False).run(KEPT)
    monkeypatch.undo()
    finished = sorted(p.name for p in tmp_path.glob("*.nc"))
    assert len(finished) == 2 and killed["n"] == 1
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.nc")}

    # Killed between cells: the callback raises after the first cell is skipped.
    def stop_after_first(report):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Sweep(config, tmp_path, progress=False).run(KEPT, on_cell=stop_after_first)

    reports = Sweep(config, tmp_path, progress=False).run(KEPT)
    assert [r.skipped for r in reports] == [True, True, False]
    for name, mtime in before.items():
        assert (tmp_path / name).stat().st_mtime_ns == mtime  # finished cells untouched
    fresh = tmp_path / "fresh"
    Sweep(config, fresh, progress=False).run(KEPT)
    for d in KEPT:
        xr.testing.assert_identical(
            strip_cell_attrs(read_cell(Sweep(config, tmp_path).path(d))),
            strip_cell_attrs(read_cell(Sweep(config, fresh).path(d))),
        )


def _raise_interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_changed_protocol_writes_new_cells(config, tmp_path):
    Sweep(config, tmp_path, progress=False).run([32, 16])
    changed = config.replace(seed=7)
    assert changed.config_hash() != config.config_hash()
    reports = Sweep(changed, tmp_path, progress=False).run([32, 16])
    assert not any(r.skipped for r in reports)
    assert len(list(tmp_path.glob("*.nc"))) == 4
    with pytest.raises(ArchiveError, match="seed"):
        open_sweep(tmp_path)
    assert config.replace(batch_size=1).config_hash() == config.config_hash()


def test_damaged_cell_is_named_not_recomputed(config, tmp_path):
    sweep = Sweep(config, tmp_path, progress=False)
    sweep.run([32])
    sweep.path(32).write_bytes(b"garbage")
    with pytest.raises(ArchiveError, match=sweep.path(32).name):
        Sweep(config, tmp_path, progress=False).run([32])


def test_activations_are_stored_chunked_and_compressed_when_asked(config, tmp_path):
    import netCDF4

    plain = Sweep(config, tmp_path, progress=False)
    plain.run([32, 16])
    assert not plain.activations_path(16).exists()  # off by default
    stored = config.replace(store_activations=(0, 1))
    assert stored.config_hash() == config.config_hash()  # same numbers, same cells
    sweep = Sweep(stored, tmp_path, progress=False)
    reports = sweep.run([32, 16])
    assert [r.skipped for r in reports] == [True, False]  # re-measured to add activations
    path = sweep.activations_path(16)
    with netCDF4.Dataset(path) as handle:
        var = handle["residual"]
        assert var.dimensions == ("window", "layer", "token", "component")
        assert var.shape == (2, 2, 16, 32) and var.precision == "float16"
        assert var.filters()["zlib"] and var.chunking() == [1, 1, 16, 32]
        values = var[:].astype(np.float64)
    assert np.array_equal(values, values.astype(np.float16).astype(np.float64))
    cell = read_cell(sweep.path(16))
    norms = np.linalg.norm(values, axis=-1).mean(axis=(0, 2))
    np.testing.assert_allclose(norms, cell.residual_norm.values, rtol=2e-3)
    assert not list(tmp_path.glob(".*.tmp"))
