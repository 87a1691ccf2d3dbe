"""``python -m fit validate``: test the relations on measured cells or an external table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fit.cli.stats_options import add_statistics_arguments, statistics_kwargs

EPILOG = """examples:
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
    """Options of the measuring path (model, grid, tasks, profile, device, dtype).

    HOOK: the measuring sweep adds its argument group here.
    """


def measure_cells(args: argparse.Namespace) -> tuple[Any, dict, Any, Path]:
    """Run the measurement sweep for the missing cells and return what validation needs.

    HOOK: returns ``(observations, protocol, flow, default_output_dir)``: an
    :class:`fit.observations.Observations` (with replicates), the protocol mapping for the
    report, an activation-flow ``xarray.Dataset`` or ``None``, and the default report
    directory.
    """
    from measure.errors import UsageError

    raise UsageError(
        "Measuring models from 'validate' is not wired yet; pass --table CSV to validate "
        "an external results table."
    )


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
