"""``python -m fit predict``: theory only, no model loaded."""

from __future__ import annotations

import argparse
from typing import Any

from fit.cli.common import positive_int

EPILOG = """examples:
  python -m fit predict --model llama3 --dense-ppl 8.3 --sparsity 0.25
  python -m fit predict --model smollm2 --dense-ppl 20.24 --dense-stderr 0.3 --sparsity 0.1,0.2,0.3
  python -m fit predict --model phi3 --dense-acc 0.80 --task piqa --kept-dim 2304
  python -m fit predict --hidden-size 4096 --dense-ppl 6.1 --kept-dim 3072 --json

Only relations without fitted constants predict from the dense value alone; relations
with constants need measured cells ('python -m fit validate').
"""


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict a sliced model's perplexity or accuracy from the dense value (no model run)",
        description="Predict the sliced model's perplexity or accuracy at each kept width with "
        "every applicable relation without fitted constants, and give its exact parameter "
        "count and forward FLOPs per token from the architecture facts. No weights are loaded; "
        "for a model that is not a known alias only its config.json is read.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default=None,
        help="alias with known facts (llama3, phi3, smollm2), HF id or local directory "
        "(reads config.json only)",
    )
    model.add_argument(
        "--hidden-size",
        type=positive_int,
        default=None,
        help="dense width D when no model is given (no parameter or FLOP counts then)",
    )
    grid = parser.add_argument_group("kept widths (one of)")
    grid.add_argument(
        "--sparsity",
        type=_float_list,
        default=None,
        metavar="S[,S...]",
        help="slicing sparsity; d = int((1 - s) D) rounded down to a multiple of 8",
    )
    grid.add_argument("--kept-dim", type=_int_list, default=None, metavar="D[,D...]")
    dense = parser.add_argument_group("dense measurement (one of)")
    dense.add_argument("--dense-ppl", type=float, default=None, help="dense perplexity")
    dense.add_argument("--dense-acc", type=float, default=None, help="dense accuracy (fraction)")
    dense.add_argument(
        "--dense-stderr", type=float, default=None, help="its standard error (gives intervals)"
    )
    dense.add_argument("--task", default=None, help="task of --dense-acc (sets chance)")
    dense.add_argument("--chance", type=float, default=None, help="chance accuracy of the task")
    other = parser.add_argument_group("other")
    other.add_argument("--alpha", type=float, default=0.05, help="interval level (default 0.05)")
    other.add_argument(
        "--seqlen",
        type=positive_int,
        default=2048,
        help="window length for FLOPs; attention cost uses the window mean (T + 1)/2 "
        "(default 2048)",
    )
    other.add_argument("--json", action="store_true", help="print JSON records")
    parser.set_defaults(run=run)


def _facts(args: argparse.Namespace) -> Any:
    from theory import KNOWN_ARCHITECTURES

    if args.model is None:
        return None
    if args.model in KNOWN_ARCHITECTURES:
        return KNOWN_ARCHITECTURES[args.model]
    return _facts_from_config(args.model)


def _facts_from_config(name: str) -> Any:
    """Facts from a local directory's or a hub model's config.json (no weights)."""
    import os
    from pathlib import Path

    from measure.errors import UsageError
    from theory import KNOWN_ARCHITECTURES

    hint = f"Known aliases: {', '.join(KNOWN_ARCHITECTURES)}; or give --hidden-size."
    try:
        from transformers import AutoConfig

        from measure.adapters import architecture_facts
    except ImportError as error:
        raise UsageError(f"Reading the config of {name!r} needs transformers: {error}") from None
    local = Path(name).expanduser().is_dir()
    if not local:
        from huggingface_hub import HfApi, try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
        if not cached:
            if offline:
                raise UsageError(
                    f"The config of {name!r} is not in the local Hugging Face cache and "
                    f"HF_HUB_OFFLINE is set. {hint}"
                )
            try:  # one short metadata request, so an unreachable hub fails in seconds
                HfApi().model_info(name, timeout=10.0)
            except Exception as error:  # noqa: BLE001 - network failures come in many types
                raise UsageError(
                    f"Cannot reach the config of {name!r} on the hub ({type(error).__name__}). "
                    f"{hint}"
                ) from None
    try:
        config = AutoConfig.from_pretrained(name, local_files_only=local)
        return architecture_facts(config)
    except (OSError, ValueError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"Cannot use the config of {name!r} ({first}). {hint}") from None


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np
    import pandas as pd
    import sympy as sp

    from fit.observations import KNOWN_CHANCE
    from fit.regression import applicable, predict
    from measure.errors import UsageError
    from theory import (
        dense_flops_per_token,
        dense_parameter_count,
        get_relation,
        kept_dim_from_sparsity,
        list_relations,
        sliced_flops_per_token,
        sliced_parameter_count,
    )

    facts = _facts(args)
    hidden = args.hidden_size or (facts.hidden_size if facts else None)
    if hidden is None:
        raise UsageError("Give --model (an alias, HF id or local directory) or --hidden-size.")
    if facts is not None and args.hidden_size and args.hidden_size != facts.hidden_size:
        raise UsageError(
            f"--hidden-size {args.hidden_size} contradicts {args.model}'s {facts.hidden_size}."
        )
    if (args.sparsity is None) == (args.kept_dim is None):
        raise UsageError("Give exactly one of --sparsity and --kept-dim.")
    if (args.dense_ppl is None) == (args.dense_acc is None):
        raise UsageError("Give exactly one of --dense-ppl and --dense-acc.")
    if args.sparsity is not None:
        for s in args.sparsity:
            if not 0.0 <= s < 1.0:
                raise UsageError(f"--sparsity must lie in [0, 1), got {s}.")
        kept = [hidden if s == 0 else kept_dim_from_sparsity(hidden, s) for s in args.sparsity]
    else:
        kept = args.kept_dim
    for d in kept:
        if d > hidden:
            raise UsageError(f"--kept-dim {d} exceeds the hidden size {hidden}.")
    if args.dense_ppl is not None:
        metric, dense = "ppl", args.dense_ppl
        if dense <= 1:
            raise UsageError(f"--dense-ppl must exceed 1, got {dense}.")
    else:
        metric, dense = f"acc:{args.task or 'task'}", args.dense_acc
        if not 0 < dense <= 1:
            raise UsageError(f"--dense-acc must be a fraction in (0, 1], got {dense}.")
    chance = args.chance if args.chance is not None else KNOWN_CHANCE.get(args.task or "", np.nan)
    rows = pd.DataFrame(
        {
            "kept_dim": kept,
            "hidden_size": hidden,
            "dense_value": dense,
            "chance": chance,
            "retained_energy": np.nan,
        }
    )
    records = []
    n = sp.Rational(args.seqlen + 1, 2)
    for d in kept:
        record: dict[str, Any] = {"kept_dim": int(d), "sparsity": 1 - d / hidden}
        if facts is not None:
            record["parameters"] = sliced_parameter_count(facts, int(d))
            record["flops_per_token"] = float(sliced_flops_per_token(facts, int(d), n))
        records.append(record)
    skipped = []
    for name in list_relations():
        relation = get_relation(name)
        if relation.parameters:
            continue
        ok, why = applicable(relation, rows, metric)
        if not ok:
            if relation.output.name == metric.split(":")[0]:
                skipped.append(f"{name}: {why}")
            continue
        pred = predict(relation, rows, alpha=args.alpha, dense_stderr=args.dense_stderr)
        for record, row in zip(records, pred.itertuples()):
            record[name] = float(row.predicted)
            if args.dense_stderr is not None:
                record[f"{name}_ci"] = [float(row.ci_lower), float(row.ci_upper)]
    dense_counts = {}
    if facts is not None:
        dense_counts = {
            "parameters": dense_parameter_count(facts),
            "flops_per_token": float(dense_flops_per_token(facts, n)),
        }
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "hidden_size": hidden,
                    "metric": metric,
                    "dense_value": dense,
                    "dense": dense_counts,
                    "predictions": records,
                    "not_applicable": skipped,
                },
                indent=2,
            )
        )
        return 0
    print(f"{args.model or 'model'}: hidden_size {hidden}, dense {metric} {dense:g}")
    if dense_counts:
        print(
            f"dense: {dense_counts['parameters']:,} parameters, "
            f"{dense_counts['flops_per_token']:.4g} FLOPs/token (window {args.seqlen})"
        )
    frame = pd.DataFrame(records)
    for column in frame.columns:
        if column.endswith("_ci"):
            frame[column] = frame[column].map(lambda ci: f"[{ci[0]:.4g}, {ci[1]:.4g}]")
        elif column == "parameters":
            frame[column] = frame[column].map(lambda x: f"{x:,}")
        elif column == "sparsity":
            frame[column] = frame[column].map(lambda x: f"{x:.4f}")
        elif column != "kept_dim":
            frame[column] = frame[column].map(lambda x: f"{x:.4g}")
    print(frame.to_string(index=False))
    for line in skipped:
        print(f"not applicable: {line}")
    return 0
