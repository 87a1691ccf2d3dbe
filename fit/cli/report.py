"""``python -m fit report RUN_DIR``: rebuild a report from what a run saved."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EPILOG = """examples:
  python -m fit report reports/smollm2                 # rebuild in place
  python -m fit report reports/smollm2 --output /tmp/r  # rebuild elsewhere
  python -m fit report reports/smollm2 --alpha 0.01     # other settings than the run's

RUN_DIR holds observations.csv (and replicates.npz) as written by 'validate'; the
settings of summary.json are reused unless overridden.
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="rebuild the report of a run from its saved observations",
        description="Rebuild tables, figures, report.tex and summary.json from the "
        "observation table (and replicates) a validation run saved.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="directory of a run")
    group = parser.add_argument_group("settings (default: those of the run)")
    for flag, kind in (
        ("--alpha", float),
        ("--ppl-tolerance", float),
        ("--acc-tolerance", float),
        ("--bootstrap-seed", int),
        ("--n-boot", int),
    ):
        group.add_argument(flag, type=kind, default=None)
    group.add_argument("--correction", choices=("holm", "bh", "none"), default=None)
    group.add_argument("--strict", action="store_true", help="exit 1 when a relation is rejected")
    parser.add_argument("--output", type=Path, default=None, help="default: RUN_DIR")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from fit.observations import Observations
    from fit.report import write_report
    from fit.validate import run_validation
    from measure.errors import UsageError

    if not args.run_dir.is_dir():
        raise UsageError(f"{args.run_dir} is not a directory.")
    observations = Observations.load(args.run_dir)
    settings: dict[str, Any] = {}
    protocol: dict[str, Any] = {}
    summary_path = args.run_dir / "summary.json"
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
        except json.JSONDecodeError as error:
            raise UsageError(f"{summary_path} is not valid JSON: {error}") from None
        settings = summary.get("settings", {})
        protocol = summary.get("protocol", {})
    kwargs = {
        key: settings[key]
        for key in ("relations", "alpha", "ppl_tolerance", "acc_tolerance", "correction")
        if key in settings
    }
    kwargs |= {key: settings[key] for key in ("seed", "n_boot") if key in settings}
    for key in (
        "alpha",
        "ppl_tolerance",
        "acc_tolerance",
        "correction",
        "bootstrap_seed",
        "n_boot",
    ):
        value = getattr(args, key)
        if value is not None:
            kwargs["seed" if key == "bootstrap_seed" else key] = value
    flow = _load_flow(args.run_dir)
    result = run_validation(observations, **kwargs)
    print(result.summary())
    out = args.output or args.run_dir
    paths = write_report(result, out, protocol=protocol, flow=flow)
    print(f"\nreport: {out}/report.tex ({len(paths)} files)")
    return 1 if args.strict and result.rejected else 0


def _load_flow(run_dir: Path) -> Any:
    """The activation-flow dataset a run saved as ``flow.nc``, if any."""
    path = run_dir / "flow.nc"
    if not path.is_file():
        return None
    import xarray as xr

    return xr.load_dataset(path)
