"""Dask execution of sweep cells: same archives as the serial sweep, resume, dead workers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cloudpickle
import pytest
import xarray as xr

from fit.cli import main
from measure.archive import open_sweep, read_cell
from measure.distributed import (
    CPU_RESOURCE,
    GPU_RESOURCE,
    CellsFailedError,
    cell_resources,
    dask_client,
    gpu_groups,
    measure_cell,
    run_distributed,
    visible_gpus,
)
from measure.errors import UsageError
from measure.sweep import Sweep

# Worker processes cannot import this test module by name: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

KEPT = [32, 24, 16]


@pytest.fixture
def config(tiny_sweep_config):
    return tiny_sweep_config


def strip_cell_attrs(ds):
    ds = ds.copy()
    for key in ("created", "cell_seconds", "slicing_seconds"):
        ds.attrs.pop(key, None)
    return ds


def die_once_and_fail(config, output, kept_dim, hidden_size, reference=None):
    """d=16: kill this worker process mid-cell the first time; d=24: always raise."""
    marker = Path(output) / "killed-once"
    if kept_dim == 16 and not marker.exists():
        marker.write_text(str(os.getpid()))
        import measure.capture as capture

        def die(*args, **kwargs):  # after slicing and evaluation, before the archive
            os._exit(1)

        capture.capture_flow = die
    if kept_dim == 24:
        raise RuntimeError("out of memory (simulated)")
    return measure_cell(config, output, kept_dim, hidden_size, reference)


def test_cells_declare_their_resource(config):
    assert cell_resources(config) == {CPU_RESOURCE: 1}
    assert cell_resources(config.replace(device="cuda")) == {GPU_RESOURCE: 1}


def test_gpus_are_dealt_out_to_local_workers(monkeypatch):
    assert gpu_groups(2, ["0", "1", "2", "3"]) == ["0,2", "1,3"]
    assert gpu_groups(1, ["GPU-a", "GPU-b"]) == ["GPU-a,GPU-b"]
    with pytest.raises(UsageError, match=r"--workers 3 exceeds the 2 visible GPU\(s\)"):
        gpu_groups(3, ["0", "1"])
    with pytest.raises(UsageError, match="no GPU is visible"):
        gpu_groups(1, [])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert visible_gpus() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == []


def test_each_local_worker_sees_only_its_gpus_even_after_a_restart():
    def seen():
        return os.environ.get("CUDA_VISIBLE_DEVICES")

    with dask_client("local", resources={GPU_RESOURCE: 1}, worker_gpus=["0,2", "1,3"]) as client:
        before = client.run(seen)
        assert sorted(before.values()) == ["0,2", "1,3"]
        assert all(
            w["resources"] == {GPU_RESOURCE: 1} for w in client.scheduler_info()["workers"].values()
        )
        first = sorted(before)[0]
        client.restart_workers([first])  # the nanny starts a new worker process
        client.wait_for_workers(2)
        assert sorted(client.run(seen).values()) == ["0,2", "1,3"]


def test_a_gpu_sweep_without_a_visible_gpu_stops_before_starting_a_cluster(
    config, tmp_path, monkeypatch
):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(UsageError, match="no GPU is visible"):
        run_distributed(
            Sweep(config.replace(device="cuda"), tmp_path), KEPT, hidden_size=32, scheduler="local"
        )


def test_local_cluster_matches_serial_resumes_and_survives_a_killed_worker(config, tmp_path):
    serial, dask = tmp_path / "serial", tmp_path / "dask"
    Sweep(config, serial, progress=False).run(KEPT)
    sweep = Sweep(config, dask, progress=False)
    with dask_client("local", workers=2, threads_per_worker=1, resources={"cell": 1}) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        finished = []
        with pytest.raises(CellsFailedError, match=r"d=24: RuntimeError: out of memory"):
            run_distributed(
                sweep,
                KEPT,
                hidden_size=32,
                retries=1,
                on_cell=finished.append,
                cell_function=die_once_and_fail,
                client=client,
            )
        # The worker measuring d=16 died mid-cell; Dask ran the cell again elsewhere.
        # d=24 raised twice (retries=1); the dense cell and d=16 are kept.
        assert (dask / "killed-once").is_file()
        assert sorted(r.kept_dim for r in finished) == [16, 32]
        assert sweep.done(32) and sweep.done(16) and not sweep.done(24)
        assert not list(dask.glob(".*.tmp"))
        mtimes = {d: sweep.path(d).stat().st_mtime_ns for d in (32, 16)}

        reports = run_distributed(sweep, KEPT, hidden_size=32, client=client)
    assert [r.skipped for r in reports] == [True, False, True]
    assert {d: sweep.path(d).stat().st_mtime_ns for d in (32, 16)} == mtimes
    assert not list(dask.glob(".dense-reference-*"))  # removed once every cell is done
    for d in KEPT:
        xr.testing.assert_identical(
            strip_cell_attrs(read_cell(Sweep(config, serial).path(d))),
            strip_cell_attrs(read_cell(sweep.path(d))),
        )
    lazy = open_sweep(dask, lazy=True)
    assert any(var.chunks for var in lazy.data_vars.values())  # dask-backed
    xr.testing.assert_identical(strip_cell_attrs(lazy.load()), strip_cell_attrs(open_sweep(serial)))


@pytest.fixture
def threaded_cluster():
    """An in-process cluster (threads): cheap, reached by its tcp:// address."""
    import torch
    from distributed import LocalCluster

    threads = torch.get_num_threads()
    clusters = []

    def start(resources):
        cluster = LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            resources=resources,
            dashboard_address=None,
        )
        clusters.append(cluster)
        return cluster.scheduler_address

    yield start
    for cluster in clusters:
        cluster.close()
    torch.set_num_threads(threads)  # cells pin torch threads in their (here shared) process


def test_cli_runs_cells_on_a_cluster_address(config, tmp_path, threaded_cluster, capsys):
    address = threaded_cluster({"cell": 1})
    args = ["measure", "--model", config.model, "--calibration-corpus", config.calibration_corpus]
    args += ["--corpus", config.eval_corpus, "--nsamples", "4", "--calibration-seqlen", "16"]
    args += ["--seqlen", "16", "--eval-windows", "3", "--batch-size", "2", "--tasks", "none"]
    args += ["--capture-windows", "2", "--kept-dim", "24", "--output", str(tmp_path)]
    assert main([*args, "--scheduler", address, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "archives:" in out and "24" in out
    assert sorted(int(ds.kept_dim) for ds in map(read_cell, tmp_path.glob("*.nc"))) == [24, 32]
    assert Sweep(config, tmp_path).done(24)


def test_cluster_without_the_cell_resource_is_refused(config, tmp_path, threaded_cluster):
    address = threaded_cluster({})
    with pytest.raises(UsageError, match="--resources cell=1"):
        run_distributed(Sweep(config, tmp_path), KEPT, hidden_size=32, scheduler=address)


def test_unknown_scheduler_is_a_usage_error(config, tmp_path):
    with pytest.raises(UsageError, match="scheduler"):
        run_distributed(Sweep(config, tmp_path), KEPT, hidden_size=32, scheduler="yarn")
