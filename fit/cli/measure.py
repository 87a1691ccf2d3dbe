"""``python -m fit measure``: measure a model on a corpus (dense perplexity)."""

from __future__ import annotations

import argparse
import json

from fit.cli.common import add_corpus_arguments, add_model_arguments, library_versions

EPILOG = """examples:
  python -m fit measure                              # SmolLM2 on enwiki-sample, offline
  python -m fit measure --eval-windows 16 --json     # quick check, machine-readable
  python -m fit measure --model llama3 --device cuda --dtype bfloat16 --corpus wikitext2 --seqlen 2048
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "measure",
        help="measure perplexity of a model on a corpus",
        description="Measure the dense perplexity of a model under the SliceGPT protocol "
        "(documents joined by blank lines, tokenized once, non-overlapping windows, "
        "PPL = exp(mean window NLL)).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(parser)
    add_corpus_arguments(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON record instead of text")
    out.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import time

    from measure.data import evaluation_windows, load_corpus, tokenize_texts
    from measure.metrics import perplexity
    from measure.models import load_model

    start = time.perf_counter()
    corpus = load_corpus(args.corpus)  # cheap input errors first, before loading weights
    loaded = load_model(
        args.model,
        device=args.device,
        dtype=args.dtype,
        device_map=args.device_map,
        revision=args.revision,
        trust_remote_code=args.trust_remote_code,
    )
    tokens = tokenize_texts(corpus.evaluation, loaded.tokenizer)
    windows = evaluation_windows(
        tokens, args.seqlen, args.eval_windows, name=f"{corpus.name} evaluation"
    )
    result = perplexity(
        loaded.model,
        windows,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        description="dense perplexity",
    )
    record = {
        "ppl": result.ppl,
        "mean_nll": result.mean_nll,
        "windows": int(windows.shape[0]),
        "seqlen": args.seqlen,
        "eval_tokens": int(windows.numel()),
        "batch_size": args.batch_size,
        **loaded.provenance,
        **corpus.describe(),
        "eval_part": "evaluation",
        "versions": library_versions(),
        "wall_seconds": round(time.perf_counter() - start, 2),
    }
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    print(f"dense perplexity  {result.ppl:.4g}  (mean window NLL {result.mean_nll:.4f} nats)")
    print("protocol")
    width = max(len(k) for k in record)
    for key, value in record.items():
        if key in {"ppl", "mean_nll"}:
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        print(f"  {key:<{width}}  {value}")
    return 0
