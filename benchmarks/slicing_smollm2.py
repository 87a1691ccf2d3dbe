"""SliceGPT on SmolLM2-135M at the paper's protocol: wall time, peak memory, perplexity.

Protocol: calibration = 64 windows of 512 tokens drawn (seed 42) from the calibration
part of enwiki-sample; evaluation = every 512-token window of the evaluation part.
For each sparsity the dense model is copied, sliced with a constant ``d`` (head not
sliced, PCA orientation) and evaluated.

Printed per run: kept ``d``, perplexity, parameter counts (measured and closed form),
slicing wall time and CPU time, mean and maximum time per layer, the load average
(other processes share the CPUs: wall time alone overstates the cost when busy),
the process's peak resident memory so far (``ru_maxrss``, which includes the dense
model, its copy and perplexity evaluation) and the peak during slicing alone
(``VmHWM`` after resetting it through ``/proc/self/clear_refs``, Linux only).

Usage::

    python benchmarks/slicing_smollm2.py                       # full protocol
    python benchmarks/slicing_smollm2.py --sparsities 0.25 --eval-windows 8
    python benchmarks/slicing_smollm2.py --json runs/slicing_smollm2.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import sys
import time
from pathlib import Path

SPARSITIES = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux >= 4.0); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _window_peak_rss_mib() -> float | None:
    """``VmHWM``: peak RSS since the last reset, in MiB (Linux only)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsities", type=float, nargs="+", default=list(SPARSITIES))
    parser.add_argument("--nsamples", type=int, default=64)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=16, help="calibration windows per pass")
    parser.add_argument("--eval-windows", type=int, default=None, help="default: all")
    parser.add_argument("--eval-batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)

    import torch

    from measure.data import calibration_windows, evaluation_windows, load_corpus, tokenize_texts
    from measure.metrics import perplexity
    from measure.models import load_model
    from measure.slicing import kept_dim_from_sparsity, slice_model
    from theory import dense_parameter_count, sliced_parameter_count

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    loaded = load_model("smollm2")
    corpus = load_corpus("enwiki-sample")
    calibration = calibration_windows(
        tokenize_texts(corpus.calibration, loaded.tokenizer),
        args.nsamples,
        args.seqlen,
        seed=args.seed,
    )
    evaluation = evaluation_windows(
        tokenize_texts(corpus.evaluation, loaded.tokenizer),
        args.seqlen,
        max_windows=args.eval_windows,
    )
    print(
        f"calibration {tuple(calibration.shape)}, evaluation {tuple(evaluation.shape)}, "
        f"corpus sha256 {corpus.sha256[:12]}"
    )
    from measure.adapters import get_adapter

    facts = get_adapter(loaded.model).facts
    dense_params = sum(p.numel() for p in loaded.model.parameters())
    assert dense_params == dense_parameter_count(facts)
    t = time.perf_counter()
    dense_ppl = perplexity(loaded.model, evaluation, batch_size=args.eval_batch_size).ppl
    print(
        f"dense: PPL {dense_ppl:.4f}, {dense_params:,} parameters ({time.perf_counter() - t:.0f} s)"
    )

    rows = []
    header = (
        f"{'s':>5} {'d':>4} {'PPL':>9} {'params':>12} {'closed form':>12} {'slice s':>8} "
        f"{'cpu s':>7} {'s/layer':>8} {'max/layer':>9} {'load':>5} {'peak MiB':>9} "
        f"{'slicing peak':>12}"
    )
    lines = [header]
    for sparsity in args.sparsities:
        kept = kept_dim_from_sparsity(facts.hidden_size, sparsity)
        model = copy.deepcopy(loaded.model)
        load_before = os.getloadavg()[0]
        reset = _reset_peak_rss()
        cpu = _cpu_seconds()
        result = slice_model(
            model, calibration, sparsity=sparsity, batch_size=args.batch_size, progress=True
        )
        cpu = _cpu_seconds() - cpu
        load = (load_before + os.getloadavg()[0]) / 2
        peak = _peak_rss_mib()
        slicing_peak = _window_peak_rss_mib() if reset else None
        ppl = perplexity(model, evaluation, batch_size=args.eval_batch_size).ppl
        params = result.parameter_count()
        closed = sliced_parameter_count(facts, kept)
        per_layer = result.layer_seconds
        row = {
            "sparsity": sparsity,
            "kept_dim": kept,
            "ppl": ppl,
            "dense_ppl": dense_ppl,
            "parameters": params,
            "closed_form_parameters": closed,
            "dense_parameters": dense_params,
            "slicing_seconds": result.total_seconds,
            "slicing_cpu_seconds": cpu,
            "layer_seconds": per_layer,
            "load_average": load,
            "peak_rss_mib": peak,
            "slicing_peak_rss_mib": slicing_peak,
        }
        rows.append(row)
        line = (
            f"{sparsity:>5.2f} {kept:>4d} {ppl:>9.4f} {params:>12,d} {closed:>12,d} "
            f"{result.total_seconds:>8.1f} {cpu:>7.1f} {sum(per_layer) / len(per_layer):>8.2f} "
            f"{max(per_layer):>9.2f} {load:>5.2f} {peak:>9.0f} "
            f"{slicing_peak if slicing_peak is not None else float('nan'):>12.0f}"
        )
        lines.append(line)
        print(line, flush=True)
        del model, result
    print()
    print(f"SmolLM2-135M, dense PPL {dense_ppl:.4f}, {dense_params:,} parameters")
    print("\n".join(lines))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "argv": sys.argv[1:]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
