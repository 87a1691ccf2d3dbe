"""Wall time of a 4-cell SmolLM2 sweep: serial against a Dask LocalCluster, in one run.

Both sweeps measure the same cells (the dense cell and three sliced ones) under the same
protocol (the ``quick`` profile unless told otherwise) into fresh directories, on the
same machine, one after the other:

* serial: :meth:`measure.sweep.Sweep.run` in this process, torch on ``--threads`` threads;
* dask: :func:`measure.distributed.run_distributed` on a new LocalCluster of ``--workers``
  processes with ``--threads-per-worker`` torch threads each (worker start-up included).

It prints both wall times, their ratio, and whether the archives are identical (apart from
the per-cell timing attributes). With 2 cores, 2 workers of 1 thread can at best overlap
the parts of a cell that do not use both cores under the serial run (model loading,
tokenization, Python overhead); they also pay worker start-up and one model load per
cell, and a dense-reference task before the sliced cells.

Usage: python benchmarks/sweep_dask.py [--profile quick] [--kept-dim 512,448,384]
       [--workers 2] [--threads-per-worker 1] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def strip(ds):
    ds = ds.copy()
    for key in ("created", "cell_seconds", "slicing_seconds"):
        ds.attrs.pop(key, None)
    return ds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=("quick", "cpu"))
    parser.add_argument("--kept-dim", default="512,448,384")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="serial run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch
    import xarray as xr

    from measure.archive import read_cell
    from measure.distributed import run_distributed
    from measure.sweep import MeasureConfig, Sweep

    torch.set_num_threads(args.threads)
    config = MeasureConfig.from_profile(args.profile, model="smollm2")
    hidden = 576
    kept = [hidden, *sorted({int(x) for x in args.kept_dim.split(",")}, reverse=True)]
    # Warm the GGUF conversion cache so that neither run pays for it.
    from measure.models import cached_gguf_model_dir, resolve

    cached_gguf_model_dir(resolve("smollm2"))

    with tempfile.TemporaryDirectory(prefix="sweep-dask-") as root:
        serial_dir, dask_dir = Path(root) / "serial", Path(root) / "dask"
        start = time.perf_counter()
        Sweep(config, serial_dir, progress=False).run(kept)
        serial = time.perf_counter() - start

        start = time.perf_counter()
        run_distributed(
            Sweep(config, dask_dir, progress=False),
            kept,
            hidden_size=hidden,
            workers=args.workers,
            threads_per_worker=args.threads_per_worker,
            retries=0,
        )
        dask = time.perf_counter() - start
        identical = True
        differences: dict[str, float] = {}  # variable -> largest relative difference
        for d in kept:
            a = strip(read_cell(Sweep(config, serial_dir).path(d)))
            b = strip(read_cell(Sweep(config, dask_dir).path(d)))
            try:
                xr.testing.assert_identical(a, b)
            except AssertionError:
                identical = False
                for name in a.data_vars:
                    x, y = a[name].values.astype(float), b[name].values.astype(float)
                    scale = max(float(abs(x[x == x]).max(initial=0.0)), 1e-300)
                    diff = float(abs(x - y)[(x == x) & (y == y)].max(initial=0.0)) / scale
                    if diff > 0:
                        differences[name] = max(differences.get(name, 0.0), diff)
        cell_seconds = {
            name: [
                float(read_cell(Sweep(config, folder).path(d)).attrs["cell_seconds"]) for d in kept
            ]
            for name, folder in (("serial", serial_dir), ("dask", dask_dir))
        }

    result = {
        "model": "smollm2",
        "profile": args.profile,
        "kept_dims": kept,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "serial_threads": args.threads,
        "workers": args.workers,
        "threads_per_worker": args.threads_per_worker,
        "serial_seconds": round(serial, 1),
        "dask_seconds": round(dask, 1),
        "dask_over_serial": round(dask / serial, 3),
        "archives_identical": identical,
        "relative_differences": differences,
        "cell_seconds": cell_seconds,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"4-cell SmolLM2 sweep ({args.profile} profile), d = {kept}, {os.cpu_count()} CPUs")
    print(f"serial ({args.threads} torch threads):  {serial:7.1f} s")
    print(
        f"dask LocalCluster ({args.workers} workers x {args.threads_per_worker} thread): "
        f"{dask:7.1f} s"
    )
    print(f"ratio dask / serial: {dask / serial:.2f}")
    print(f"archives identical (timing attributes aside): {identical}")
    if differences:
        shown = ", ".join(f"{k} {v:.1e}" for k, v in sorted(differences.items()))
        print(f"largest relative differences serial vs dask: {shown}")
    print(f"per-cell seconds: {cell_seconds}")
    print(f"1-minute load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
