"""Distributed sweeps with Dask: every (model, kept_dim) cell is one task with its own archive.

The cells of a :class:`~measure.sweep.Sweep` are submitted to a Dask ``distributed``
cluster: a :class:`~distributed.LocalCluster` of worker processes (``scheduler="local"``)
or an existing cluster (``scheduler="tcp://HOST:PORT"``). Dask does the scheduling,
the retries and the recovery from dead workers; this module only describes the tasks.

* **Resume.** Cells whose archive exists under the same config hash are not submitted,
  and a task first checks again, so a retried or recomputed task never measures a cell
  twice. Archives are written atomically by each task; a killed worker loses at most the
  cell it was measuring, which Dask then runs again on another worker.
* **Dense work once.** The dense reference of the activation flow is one task that writes
  ``.dense-reference-<hash>/`` next to the archives (shared disk); every sliced cell
  depends on it and reads the memory maps. The dense cell is a task of its own.
* **Resources.** A cell holds one unit of a worker resource for its whole run: ``GPU``
  when the protocol's device is CUDA, ``cell`` otherwise. Workers of an existing cluster
  must declare it (``dask worker ADDRESS --nthreads 8 --resources GPU=1``); a local
  cluster's workers declare ``cell=1`` (or ``GPU=1``) themselves. So a worker runs one
  cell at a time, and torch in that cell uses the worker's threads (``--nthreads`` /
  ``threads_per_worker``), which avoids oversubscribing the cores.
* **Combining.** Each task returns only the archive path; open the results lazily with
  :func:`measure.archive.open_sweep` (``lazy=True`` uses ``xarray.open_mfdataset``).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measure.errors import ToolkitError, UsageError
from measure.sweep import CellReport, MeasureConfig, Sweep

GPU_RESOURCE = "GPU"
CPU_RESOURCE = "cell"


class CellsFailedError(ToolkitError):
    """Some cells failed after their retries; the finished ones are kept."""


@dataclass(frozen=True)
class CellOutcome:
    """What a cell task returns to the client."""

    kept_dim: int
    path: str
    skipped: bool
    seconds: float
    worker: str
    pid: int


def cell_resources(config: MeasureConfig) -> dict[str, float]:
    """The Dask resource a cell of this protocol holds while it runs."""
    gpu = config.device.startswith("cuda")
    return {GPU_RESOURCE if gpu else CPU_RESOURCE: 1}


def _pin_torch_threads() -> None:
    """Give torch exactly the threads of the worker running this task."""
    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except ValueError:  # not inside a Dask worker (called directly)
        return
    import torch

    torch.set_num_threads(max(1, int(threads)))


def compute_reference(config: MeasureConfig, output: str) -> str | None:
    """Task: compute the dense reference of the activation flow once (idempotent)."""
    _pin_torch_threads()
    sweep = Sweep(config, output, progress=False)
    reference = sweep._reference()
    return None if reference is None else str(reference.directory)


def measure_cell(
    config: MeasureConfig,
    output: str,
    kept_dim: int,
    hidden_size: int,
    reference: str | None = None,
) -> CellOutcome:
    """Task: measure one cell and write its archive, unless it is already there.

    ``reference`` is the dense reference's directory (the result of
    :func:`compute_reference`); passing it makes Dask run the sliced cells after it.
    """
    _pin_torch_threads()
    start = time.perf_counter()
    sweep = Sweep(config, output, progress=False)
    try:
        from distributed import get_worker

        worker = get_worker().address
    except ValueError:
        worker = "local"
    if sweep.done(kept_dim):
        return CellOutcome(kept_dim, str(sweep.path(kept_dim)), True, 0.0, worker, os.getpid())
    if kept_dim == hidden_size:
        path = sweep._dense_cell()
    else:
        path = sweep._sliced_cell(kept_dim)
    seconds = time.perf_counter() - start
    return CellOutcome(kept_dim, str(path), False, seconds, worker, os.getpid())


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else every one."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_groups(workers: int, gpus: Sequence[str]) -> list[str]:
    """``CUDA_VISIBLE_DEVICES`` of each local worker: the GPUs dealt out round-robin.

    A worker sees only its own GPUs, so ``cuda`` in every cell means that worker's GPU
    and a ``device_map`` cell spreads over that worker's share.

    >>> gpu_groups(2, ["0", "1", "2", "3"])
    ['0,2', '1,3']
    >>> gpu_groups(3, ["0", "1", "2"])
    ['0', '1', '2']
    """
    if not gpus:
        raise UsageError(
            "The protocol runs on CUDA but no GPU is visible to this process "
            "(CUDA_VISIBLE_DEVICES or the driver); use --device cpu."
        )
    if workers > len(gpus):
        raise UsageError(
            f"--workers {workers} exceeds the {len(gpus)} visible GPU(s); a local cluster runs "
            f"one GPU cell per worker and gives each worker its own GPUs. Use --workers "
            f"{len(gpus)} or fewer."
        )
    return [",".join(gpus[i::workers]) for i in range(workers)]


@contextmanager
def dask_client(
    scheduler: str = "local",
    *,
    workers: int = 2,
    threads_per_worker: int = 1,
    resources: dict[str, float] | None = None,
    worker_gpus: Sequence[str] | None = None,
) -> Iterator[Any]:
    """A ``distributed.Client`` on a new LocalCluster or on an existing scheduler.

    Local workers are processes that declare ``resources`` (one cell at a time each);
    their environment keeps tokenizers single-threaded. With ``worker_gpus`` (one
    ``CUDA_VISIBLE_DEVICES`` value per worker, see :func:`gpu_groups`) each worker
    process sees only its own GPUs; their number sets the number of workers.
    """
    from distributed import Client, LocalCluster, Nanny

    if scheduler == "local":
        if workers < 1 or threads_per_worker < 1:
            raise UsageError("--workers and --threads-per-worker must be positive.")
        env = {"TOKENIZERS_PARALLELISM": "false"}
        worker_class: Any = Nanny
        if worker_gpus is not None:
            workers = len(worker_gpus)
            pending = list(worker_gpus)

            def worker_class(*args: Any, **kwargs: Any) -> Any:
                # LocalCluster builds its worker processes through this, one per worker;
                # a Nanny keeps its environment when it restarts a dead worker.
                gpus = pending.pop(0)
                pending.append(gpus)  # round-robin, should Dask ever create more
                own = {**(kwargs.pop("env", None) or {}), "CUDA_VISIBLE_DEVICES": gpus}
                return Nanny(*args, env=own, **kwargs)

        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            worker_class=worker_class,
            resources=dict(resources or {}),
            dashboard_address=None,
            silence_logs=logging.ERROR,
            env=env,
        )
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
        return
    if not scheduler.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
        raise UsageError(
            f"--scheduler must be 'serial', 'local' or a Dask scheduler address such as "
            f"tcp://HOST:8786; got {scheduler!r}."
        )
    try:
        client = Client(scheduler, timeout="30s")
    except OSError as exc:
        raise UsageError(f"Cannot reach the Dask scheduler at {scheduler} ({exc}).") from None
    try:
        yield client
    finally:
        client.close()


def check_resources(client: Any, resources: dict[str, float], *, timeout: float = 60) -> None:
    """Fail fast when no worker declares the resource the cells need (they would wait)."""
    client.wait_for_workers(1, timeout=timeout)
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    for name, amount in resources.items():
        if not any(w.get("resources", {}).get(name, 0) >= amount for w in workers):
            raise UsageError(
                f"No worker of the Dask cluster declares the resource {name}={amount:g} that "
                f"each cell needs. Start the workers with: dask worker ADDRESS --nthreads N "
                f"--resources {name}=1 (one per GPU for GPU cells)."
            )


def run_distributed(
    sweep: Sweep,
    kept_dims: Sequence[int],
    *,
    hidden_size: int,
    scheduler: str = "local",
    workers: int = 2,
    threads_per_worker: int = 1,
    retries: int = 1,
    progress: bool | None = None,
    on_cell: Callable[[CellReport], None] | None = None,
    cell_function: Callable[..., CellOutcome] = measure_cell,
    client: Any | None = None,
) -> list[CellReport]:
    """Measure the missing cells of ``sweep`` on a Dask cluster; one report per cell.

    Parameters
    ----------
    sweep : the protocol and the archive directory (on disk every worker can reach).
    kept_dims : the cells, the dense one (``hidden_size``) included.
    hidden_size : the model's ``D`` (from :func:`measure.plan.model_facts`, no loading).
    scheduler : ``"local"`` for a new LocalCluster, or a scheduler address.
    workers, threads_per_worker : size of the LocalCluster (ignored for an address).
    retries : extra attempts of a cell that raised (Dask's ``retries``); cells whose
        worker died are rescheduled by Dask itself (``distributed.scheduler.allowed-failures``).
    progress : show a progress bar over cells (default: the sweep's setting).
    on_cell : called with each cell's report as it finishes (in completion order).
    cell_function : the task run per cell (default :func:`measure_cell`).
    client : an existing ``distributed.Client`` to use (and leave open) instead of
        ``scheduler``.

    Raises
    ------
    CellsFailedError
        Some cells failed after their retries (the others are written and kept).
    """
    from distributed import as_completed
    from tqdm.auto import tqdm

    show = sweep.progress if progress is None else progress
    config, output = sweep.config, str(sweep.output)
    reports: dict[int, CellReport] = {}
    todo = []
    for d in kept_dims:
        if sweep.done(d):
            reports[d] = CellReport(d, sweep.path(d), True, 0.0)
        else:
            todo.append(d)
    failures: dict[int, str] = {}
    if todo:
        resources = cell_resources(config)
        token = f"{sweep.hash[:8]}-{uuid.uuid4().hex[:6]}"
        connection = (
            nullcontext(client)
            if client is not None
            else dask_client(
                scheduler,
                workers=workers,
                threads_per_worker=threads_per_worker,
                resources=resources,
                worker_gpus=(
                    gpu_groups(workers, visible_gpus())
                    if scheduler == "local" and GPU_RESOURCE in resources
                    else None
                ),
            )
        )
        with connection as client:
            check_resources(client, resources)
            reference = None
            if config.capture_windows > 0 and any(d != hidden_size for d in todo):
                reference = client.submit(
                    compute_reference,
                    config,
                    output,
                    key=f"dense-reference-{token}",
                    retries=retries,
                    resources=resources,
                    pure=False,
                )
            futures = {}
            for d in todo:
                future = client.submit(
                    cell_function,
                    config,
                    output,
                    d,
                    hidden_size,
                    reference if d != hidden_size else None,
                    key=f"cell-d{d}-{token}",
                    retries=retries,
                    resources=resources,
                    pure=False,
                )
                futures[future] = d
            bar = tqdm(
                total=len(kept_dims),
                initial=len(kept_dims) - len(todo),
                desc="cells",
                unit="cell",
                disable=not show,
            )
            for future in as_completed(futures):
                d = futures[future]
                try:
                    outcome = future.result()
                except Exception as exc:  # noqa: BLE001 - reported per cell below
                    failures[d] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                else:
                    reports[d] = CellReport(d, Path(outcome.path), outcome.skipped, outcome.seconds)
                    bar.set_postfix_str(f"d={d} on {outcome.worker}")
                    if on_cell is not None:
                        on_cell(reports[d])
                future.release()  # a result held by a dying worker need not be recomputed
                bar.update(1)
            bar.close()
            if reference is not None:
                reference.release()
    if failures:
        lines = "; ".join(f"d={d}: {msg}" for d, msg in sorted(failures.items()))
        raise CellsFailedError(
            f"{len(failures)} cell(s) failed after {retries} retr{'y' if retries == 1 else 'ies'}"
            f" ({lines}). The {len(reports)} finished cell(s) are kept in {output}; run the "
            "same command again to resume."
        )
    if all(sweep.done(d) for d in kept_dims):
        shutil.rmtree(sweep.output / f".dense-reference-{sweep.hash[:12]}", ignore_errors=True)
    return [reports[d] for d in kept_dims]
