"""``python -m fit validate``: test the relations on measured cells or an external table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fit.cli.stats_options import add_statistics_arguments, statistics_kwargs

EPILOG = """examples:
  python -m fit validate                                     # SmolLM2, CPU profile, offline
  python -m fit validate --model llama3 --profile paper      # GPU with hub access
  python -m fit validate --model llama3 --profile paper --dry-run   # plan: cells, memory, time
  python -m fit validate --table results.csv                 # published numbers, no model run
  python -m fit validate --table results.csv --strict        # exit 1 when a relation is rejected
  python -m fit validate --table results.csv --relations ppl_reported,ppl_power --alpha 0.01
  python -m fit validate --table results.csv --correction bh --ppl-tolerance 0.1 --output out/

external table (CSV, one row per cell; '#' starts a comment):
  model,hidden_size,kept_dim,metric,value,stderr,source,protocol
  llama3,4096,4096,ppl,6.14,,paper Table 1,wikitext2-2048
  llama3,4096,3072,ppl,9.2,,paper Table 1,wikitext2-2048
  llama3,4096,4096,acc:piqa,0.80,,paper Table 2,lm-eval
  (sparsity instead of kept_dim is converted by SliceGPT's rule int((1 - s) D), rounded
  down to a multiple of 8; accuracy is a fraction; metrics: ppl, tau, acc:<task>)

exit codes: 0 done; 2 usage, input or schema error; 1 with --strict when a relation is rejected
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="predict with every relation and test it on measured or published cells",
        description="Predict every cell with every applicable relation, quantify the errors, "
        "fit constants, run the nested, equivalence and heterogeneity tests with "
        "multiple-testing control, print a verdict table and write the report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("input")
    source.add_argument(
        "--table",
        type=Path,
        default=None,
        metavar="CSV",
        help="validate an external results table instead of measuring (schema below)",
    )
    add_measure_arguments(parser)
    add_statistics_arguments(parser)
    out = parser.add_argument_group("output")
    out.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="DIR",
        help="report directory (default: reports/<model>, or reports/<table name> for a "
        "table of several models)",
    )
    out.add_argument("--no-report", action="store_true", help="print the verdicts only")
    parser.set_defaults(run=run)


# --- measuring path (hook) --------------------------------------------------------------------


def add_measure_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the measuring path (model, grid, protocol, device, dtype, archives)."""
    from fit.cli.common import add_model_arguments
    from fit.cli.measure import add_sweep_arguments

    add_model_arguments(parser)
    add_sweep_arguments(parser)
    runs = parser.add_argument_group("archives")
    runs.add_argument(
        "--runs",
        type=Path,
        default=None,
        metavar="DIR",
        help="archive directory of the sweep (default: runs/<model>); finished cells of the "
        "same protocol are reused",
    )
    runs.add_argument("--no-progress", action="store_true", help="hide progress bars")


def measure_cells(args: argparse.Namespace) -> tuple[Any, dict, Any, Path]:
    """Run the measurement sweep for the missing cells and return what validation needs:
    ``(observations, protocol, flow, default_output_dir)``."""
    from fit.archives import observations_from_sweep, protocol_label
    from fit.cli.measure import run_sweep
    from fit.figures import slug
    from measure.archive import open_sweep
    from measure.schema import PROTOCOL_ATTRS
    from measure.sweep import DEFAULT_SPARSITIES

    if not args.sparsity and not args.kept_dim:
        args.sparsity = list(DEFAULT_SPARSITIES)
    sweep, kept = run_sweep(args, output=args.runs)
    ds = open_sweep([sweep.path(d) for d in kept])
    observations = observations_from_sweep(ds)
    protocol = {
        "input": "measured archives",
        "archives": str(sweep.output),
        "protocol_label": protocol_label(ds),
        "profile": args.profile,
    }
    protocol.update({key: ds.attrs.get(key) for key in PROTOCOL_ATTRS if key in ds.attrs})
    return observations, protocol, ds, Path("reports") / slug(args.model)


# --- run ---------------------------------------------------------------------------------------


def _table_input(path: Path) -> tuple[Any, dict, Any, Path]:
    import hashlib

    from fit.figures import slug
    from fit.observations import Observations

    observations = Observations.from_csv(path)
    protocol = {
        "input": "external table",
        "table": str(path),
        "table_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "protocols": ", ".join(sorted(set(observations.table.protocol))),
        "sources": "; ".join(sorted(set(observations.table.source) - {""})) or "(none given)",
    }
    models = observations.models
    name = models[0] if len(models) == 1 else path.stem
    return observations, protocol, None, Path("reports") / slug(name)


def run(args: argparse.Namespace) -> int:
    if args.dry_run and args.table is None:
        from fit.cli.measure import print_plan
        from measure.sweep import DEFAULT_SPARSITIES

        if not args.sparsity and not args.kept_dim:
            args.sparsity = list(DEFAULT_SPARSITIES)
        return print_plan(args, output=args.runs)
    from fit.report import write_report
    from fit.validate import run_validation

    if args.table is not None:
        observations, protocol, flow, default_output = _table_input(args.table)
    else:
        observations, protocol, flow, default_output = measure_cells(args)
    kwargs = statistics_kwargs(args)
    result = run_validation(observations, **kwargs)
    print(result.summary())
    if not args.no_report:
        out = args.output or default_output
        protocol = {**protocol, "command": "python -m fit validate"}
        paths = write_report(result, out, protocol=protocol, flow=flow)
        print(f"\nreport: {out}/report.tex ({len(paths)} files)")
    if args.strict and result.rejected:
        rejected = result.verdicts[result.verdicts.verdict == "rejected"]
        names = ", ".join(f"{r.relation} ({r.model} {r.metric})" for r in rejected.itertuples())
        print(f"rejected: {names}")
        return 1
    return 0
