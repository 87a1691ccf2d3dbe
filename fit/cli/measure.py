"""``python -m fit measure``: run a resumable measurement sweep into netCDF archives."""

from __future__ import annotations

import argparse
import json

from fit.cli.common import add_model_arguments, positive_int

# One process by default: a LocalCluster costs seconds of worker start-up and a model load
# per cell, which small sweeps and tests do not recover. Long sweeps gain from
# --scheduler local (benchmarks/sweep_dask.py measures the ratio on the machine at hand).
DEFAULT_SCHEDULER = "serial"

EPILOG = """examples:
  python -m fit measure                                          # dense cell of SmolLM2 (offline)
  python -m fit measure --sparsity 0.1,0.2,0.25,0.3,0.4,0.5      # the CPU sweep of the README
  python -m fit measure --kept-dim 512,448 --profile quick       # a smoke test
  python -m fit measure --model llama3 --profile paper --sparsity 0.25   # GPU, hub access
  python -m fit measure --model llama3 --profile paper --sparsity 0.25 --dry-run   # plan only
  python -m fit measure --sparsity 0.1,0.25 --scheduler local --workers 2   # Dask LocalCluster

Killed part-way, the same command resumes: finished cells (same config hash) are skipped.
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "measure",
        help="measure dense and sliced cells into netCDF archives",
        description="Slice a model at each kept dimension (SliceGPT) and measure perplexity, "
        "zero-shot accuracy and the activation flow against the dense parent; one netCDF "
        "archive per (model, kept_dim) cell. The dense cell (kept_dim = hidden size) is "
        "always part of the sweep.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(parser)
    add_sweep_arguments(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--output", default=None, help="archive directory (default: runs/<model>)")
    out.add_argument("--json", action="store_true", help="print the cell table as JSON")
    out.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(run=run)


def float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None


def int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}"
        ) from None


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    grid = parser.add_argument_group("grid")
    grid.add_argument("--sparsity", type=float_list, default=[], help="e.g. 0.1,0.25,0.5")
    grid.add_argument("--kept-dim", type=int_list, default=[], help="e.g. 512,448")
    proto = parser.add_argument_group("protocol (defaults come from --profile)")
    proto.add_argument(
        "--profile",
        default="cpu",
        choices=("cpu", "paper", "quick"),
        help="cpu: the documented CPU default; paper: SliceGPT's GPU protocol; quick: smoke test",
    )
    proto.add_argument("--calibration-corpus", default=None, help="corpus for PCA")
    proto.add_argument("--nsamples", type=positive_int, default=None, help="calibration windows")
    proto.add_argument("--calibration-seqlen", type=positive_int, default=None)
    proto.add_argument("--calibration-mode", choices=("random", "contiguous"), default=None)
    proto.add_argument("--seed", type=int, default=None, help="calibration sampling seed")
    proto.add_argument("--orientation", choices=("pca", "random"), default=None)
    proto.add_argument("--slice-head", action="store_true", default=None)
    proto.add_argument("--corpus", dest="eval_corpus", default=None, help="evaluation corpus")
    proto.add_argument("--seqlen", dest="eval_seqlen", type=positive_int, default=None)
    proto.add_argument("--eval-windows", type=positive_int, default=None)
    proto.add_argument("--batch-size", type=positive_int, default=None)
    proto.add_argument(
        "--tasks",
        default=None,
        help="comma-separated task names, or 'none' (see python -m fit ls)",
    )
    proto.add_argument("--task-items", type=positive_int, default=None, help="items per task")
    proto.add_argument("--capture-windows", type=int, default=None, help="0 turns capture off")
    proto.add_argument("--keep-token-nll", action="store_true", default=None)
    proto.add_argument(
        "--store-activations",
        type=int_list,
        default=None,
        metavar="LAYERS",
        help="also store the mapped-back residuals of these layers (e.g. 0,15,29), chunked "
        "and compressed, beside each sliced cell's archive (off by default)",
    )
    proto.add_argument("--activation-dtype", choices=("float16", "float32"), default=None)
    add_execution_arguments(parser)


def add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    run = parser.add_argument_group("execution (does not change the config hash)")
    run.add_argument(
        "--scheduler",
        default=DEFAULT_SCHEDULER,
        help="serial (in this process), local (a Dask LocalCluster) or a Dask scheduler "
        f"address tcp://HOST:PORT (default: {DEFAULT_SCHEDULER})",
    )
    run.add_argument(
        "--workers", type=positive_int, default=2, help="LocalCluster worker processes (2)"
    )
    run.add_argument(
        "--threads-per-worker",
        type=positive_int,
        default=1,
        help="torch threads of each LocalCluster worker; each worker runs one cell at a time (1)",
    )
    run.add_argument(
        "--retries", type=int, default=1, help="extra attempts of a cell that raised (Dask, 1)"
    )
    run.add_argument(
        "--max-memory",
        default=None,
        help="per-device caps for --device-map, e.g. 0=20GiB,cpu=64GiB (or the same as JSON)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the cells, their sizes, memory and time estimates, and what is done; "
        "reads only the model config (no torch, no weights)",
    )


def config_from_args(args: argparse.Namespace):
    from measure.sweep import MeasureConfig
    from measure.tasks import check_tasks

    tasks = None
    if args.tasks is not None:
        names = (
            []
            if args.tasks.strip().lower() == "none"
            else [t.strip() for t in args.tasks.split(",") if t.strip()]
        )
        tasks = tuple(check_tasks(names))
    overrides = {
        "model": args.model,
        "revision": args.revision,
        "dtype": args.dtype,
        "device": args.device,
        "device_map": args.device_map,
        "max_memory": _max_memory(getattr(args, "max_memory", None)),
        "calibration_corpus": args.calibration_corpus,
        "nsamples": args.nsamples,
        "calibration_seqlen": args.calibration_seqlen,
        "calibration_mode": args.calibration_mode,
        "seed": args.seed,
        "orientation": args.orientation,
        "slice_head": args.slice_head,
        "eval_corpus": args.eval_corpus,
        "eval_seqlen": args.eval_seqlen,
        "eval_windows": args.eval_windows,
        "batch_size": args.batch_size,
        "tasks": tasks,
        "task_items": args.task_items,
        "capture_windows": args.capture_windows,
        "keep_token_nll": args.keep_token_nll,
        "store_activations": tuple(args.store_activations) if args.store_activations else None,
        "activation_dtype": args.activation_dtype,
    }
    # Model options given explicitly on the command line win over the profile.
    config = MeasureConfig.from_profile(args.profile, **overrides)
    return config


def _max_memory(text: str | None) -> str | None:
    from measure.devices import parse_max_memory

    parse_max_memory(text)  # a bad value is a usage error now, not after loading
    return text


def default_output(model: str) -> str:
    from measure.archive import model_slug

    return f"runs/{model_slug(model)}"


def run_sweep(args: argparse.Namespace, output=None):
    """Run (or resume) the sweep the arguments describe; return (sweep, kept dims)."""
    from measure.sweep import Sweep, kept_dims_for

    config = config_from_args(args)
    output = output or getattr(args, "output", None) or default_output(config.model)
    sweep = Sweep(config, output, progress=not args.no_progress)
    scheduler = getattr(args, "scheduler", "serial")
    if scheduler == "serial":
        hidden = sweep.prepare()["facts"].hidden_size
    else:  # the client reads the config only; the workers load the model
        from measure.plan import model_facts

        hidden = model_facts(config.model, revision=config.revision)[0].hidden_size
    kept = kept_dims_for(
        hidden, sparsities=args.sparsity, kept_dims=args.kept_dim, round_to=config.round_to
    )
    if scheduler == "serial":
        sweep.run(kept)
    else:
        from measure.distributed import run_distributed

        run_distributed(
            sweep,
            kept,
            hidden_size=hidden,
            scheduler=scheduler,
            workers=args.workers,
            threads_per_worker=args.threads_per_worker,
            retries=args.retries,
        )
    return sweep, kept


def print_plan(args: argparse.Namespace, output=None) -> int:
    """``--dry-run``: print the plan of the sweep the arguments describe (no torch)."""
    from measure.plan import plan_sweep

    config = config_from_args(args)
    output = output or getattr(args, "output", None) or default_output(config.model)
    plan = plan_sweep(config, output, sparsities=args.sparsity, kept_dims=args.kept_dim)
    print(plan.render())
    return 0


def cell_table(sweep, kept_dims) -> list[dict]:
    import numpy as np

    from measure.archive import read_cell

    rows = []
    for d in kept_dims:
        ds = read_cell(sweep.path(d))
        row = {
            "kept_dim": d,
            "sparsity": round(float(ds.attrs.get("sparsity", 0.0)), 4),
            "parameter_count": int(ds.attrs.get("parameter_count", 0)),
            "ppl": float(ds.ppl),
        }
        if "accuracy" in ds:
            for task, acc in zip(ds.task.values, ds.accuracy.values):
                row[f"acc:{task}"] = float(acc)
        for var in ("kl_divergence", "logit_scale", "top1_agreement"):
            row[var] = float(ds[var]) if var in ds else float("nan")
        row["retained_energy"] = (
            float(ds.retained_energy.mean()) if "retained_energy" in ds else float("nan")
        )
        row["cell_seconds"] = float(ds.attrs.get("cell_seconds", np.nan))
        row["file"] = sweep.path(d).name
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    if not rows:
        return
    columns = [c for c in rows[0] if c != "file"]
    formatted = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in formatted)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for r in formatted:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))


def _fmt(value) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:.4g}"
    return str(value)


def run(args: argparse.Namespace) -> int:
    if args.dry_run:
        return print_plan(args)
    sweep, kept = run_sweep(args)
    rows = cell_table(sweep, kept)
    if args.json:
        print(
            json.dumps(
                {"config_hash": sweep.hash, "output": str(sweep.output), "cells": rows}, indent=2
            )
        )
        return 0
    attrs = sweep.prepare()["attrs"] if sweep._prepared else {}
    print_table(rows)
    print(f"archives: {sweep.output} (config hash {sweep.hash[:12]})")
    if attrs:
        print(
            f"protocol: {attrs['model_id']} sha256 {str(attrs['model_sha256'])[:12]} "
            f"{attrs['dtype']} {attrs['device']}; calibration {attrs['calibration_corpus']} "
            f"{attrs['nsamples']}x{attrs['calibration_seqlen']} seed {attrs['seed']}; eval "
            f"{attrs['eval_corpus']} {attrs['eval_windows']}x{attrs['eval_seqlen']} "
            f"(sha256 {attrs['evaluation_sha256'][:12]}); tasks {','.join(attrs['tasks']) or 'none'}"
            f" lm-eval {attrs['harness_version']}"
        )
    return 0
