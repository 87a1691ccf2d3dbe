"""Capture overhead and memory of the activation-flow capture on SmolLM2 (CPU).

Prints, in one run on the same windows:

* the wall time of evaluation (perplexity) without capture and with capture, and their ratio;
* the one-off cost of the dense reference (computed once per sweep);
* the peak resident memory of a capture run at N, 2N and 4N windows, each in a fresh process,
  to show that memory does not grow with the number of windows.

Usage: python benchmarks/capture_overhead.py [--windows 4] [--kept-dim 448]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def child(n_windows: int, kept_dim: int, measure_time: bool) -> dict:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from measure.capture import DenseReference, capture_flow
    from measure.data import calibration_windows, evaluation_windows, load_corpus, tokenize_texts
    from measure.metrics import perplexity
    from measure.models import load_model
    from measure.slicing import slice_model

    corpus = load_corpus("enwiki-sample")
    dense = load_model("smollm2")
    tokens = tokenize_texts(corpus.evaluation, dense.tokenizer)
    windows = evaluation_windows(tokens, 512, n_windows)
    cal = calibration_windows(tokenize_texts(corpus.calibration, dense.tokenizer), 16, 512, seed=42)
    out: dict = {"windows": n_windows, "kept_dim": kept_dim}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        reference = DenseReference.compute(dense.model, windows, f"{tmp}/ref", centre=False)
        out["reference_seconds"] = time.perf_counter() - start
        del dense
        sliced = load_model("smollm2")
        result = slice_model(
            sliced.model, cal, kept_dim=kept_dim, record_bases=("out",), progress=False
        )
        bases = [s.basis for s in result.spectra if s.position == "out"]
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if measure_time:
            perplexity(sliced.model, windows[:1], batch_size=1)  # warm-up
            start = time.perf_counter()
            perplexity(sliced.model, windows, batch_size=1)
            out["eval_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        if measure_time:
            perplexity(sliced.model, windows, batch_size=1)
        capture_flow(sliced.model, reference, bases)
        out["eval_with_capture_seconds"] = time.perf_counter() - start
        out["peak_rss_mib_before_capture"] = rss_before / 1024
        out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--kept-dim", type=int, default=448)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--time", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.windows, args.kept_dim, args.time)))
        return
    runs = []
    for factor in (1, 2, 4):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--windows",
            str(args.windows * factor),
            "--kept-dim",
            str(args.kept_dim),
        ]
        if factor == 1:
            cmd.append("--time")
        text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(text.strip().splitlines()[-1]))
    base = runs[0]
    print(
        f"SmolLM2, d={args.kept_dim}, windows of 512 tokens, torch threads "
        f"{os.environ.get('OMP_NUM_THREADS', 'default')}"
    )
    print(f"evaluation without capture ({base['windows']} windows): {base['eval_seconds']:.2f} s")
    print(
        f"evaluation with capture    ({base['windows']} windows): "
        f"{base['eval_with_capture_seconds']:.2f} s"
    )
    print(
        f"capture overhead ratio: {base['eval_with_capture_seconds'] / base['eval_seconds']:.2f}x"
    )
    print(f"dense reference (once per sweep): {base['reference_seconds']:.2f} s")
    print("peak RSS of a capture run (fresh process each):")
    for run in runs:
        print(
            f"  {run['windows']:>3} windows: {run['peak_rss_mib']:.0f} MiB "
            f"(before capture {run['peak_rss_mib_before_capture']:.0f} MiB)"
        )


if __name__ == "__main__":
    main()
