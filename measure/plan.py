"""Dry-run planner: what a sweep would run, how big each cell is, and what is done.

The planner reads only the model's configuration: the published architecture facts of a
known alias (:data:`theory.architecture.KNOWN_ARCHITECTURES`, offline), or the
``config.json`` of a local directory or of a hub id in the local Hugging Face cache. It
never imports torch and never loads weights, so it answers in about a second.

For every cell it prints the kept dim, the sparsity, the exact parameter count and the
forward FLOPs per token (:mod:`theory.counts`), an estimate of the peak device memory and
an estimate of the time on a stated reference GPU, and whether the archive already
exists in the output directory under the same config hash.

Peak device memory of a cell (bytes; ``b`` bytes per element of the dtype)
--------------------------------------------------------------------------
``weights + max(slicing, evaluation)`` where

* ``weights = max(P_dense, P_sliced) * b``: a sliced cell loads the dense model and slices
  it in place, so no second copy is kept, and the sliced model (shortcut matrices
  ``Q_a^T Q_b`` included) is what remains;
* ``slicing = A + B_cal T D 8 + 2 V D 8``: the calibration activations ``A`` (on a CPU,
  the block inputs and outputs of all ``N`` windows of ``T`` tokens, ``2 N T D b``; on a GPU
  they wait in host memory and only the batch in flight is on the device,
  ``3 B_cal T D b``), one calibration batch in float64 for the second moment, and the float64
  rotation of the largest matrix (the ``V x D`` embedding or head) with its result;
* ``evaluation = B_eval T_eval V (b + 4 + 4)``: the logits of one evaluation batch, their
  float32 copy and the float32 log-softmax of the cross-entropy.

The eigendecompositions run in float64 on the host: ``6 D^2 8`` bytes (second moment,
damped copy, eigenvectors, and the bases of three junctions). The dense reference for
the activation flow is written to disk once per sweep: ``C L T D 2 + C T V 4`` bytes for
``C`` capture windows.

Time of a cell
--------------
Forward FLOPs (calibration ``N T`` tokens through the dense model, evaluation and capture
through the sliced one, at the mean causal context ``(T + 1) / 2``) at the reference
GPU's peak times an assumed model-FLOP utilisation; the float64 rotations
(``2 d`` FLOPs per weight touching the residual stream) at the GPU's float64 peak times
the same utilisation; and ``2L + 1`` eigendecompositions of ``D x D`` (``9 D^3`` FLOPs
each) in float64: on the GPU for CUDA cells (an assumed rate, not measured here), else at a
single-core CPU rate (measured; a lower bound for D > 1024, where ``eigh`` is threaded). Task
evaluation (lm-eval) is not included.

Examples
--------
>>> from measure.sweep import MeasureConfig
>>> plan = plan_sweep(MeasureConfig.from_profile("paper", model="llama3"), "runs/llama3",
...                   sparsities=[0.25])
>>> [cell.parameter_count for cell in plan.cells]
[8030261248, 6775635968]
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from measure.errors import ModelUnavailableError, UsageError
from theory.architecture import KNOWN_ARCHITECTURES, ArchitectureFacts

GIB = 1024**3

#: Reference GPU: NVIDIA A100 dense peaks (TFLOP/s) by dtype, without sparsity.
REFERENCE_GPU = "NVIDIA A100"
PEAK_TFLOPS = {"bfloat16": 312.0, "float16": 312.0, "float32": 19.5, "float64": 19.5}
FLOAT64_TFLOPS = 19.5
#: Assumed model-FLOP utilisation on the reference GPU.
MFU = 0.40
#: float64 ``eigh`` on one CPU core, in GFLOP/s (``9 D^3`` FLOPs per call); measured
#: about 30 on one core of a 2-core x86 CPU for D = 512 ... 2048.
EIGH_GFLOPS = 30.0
#: float64 ``eigh`` on the reference GPU (cuSOLVER), in GFLOP/s: an assumption, not a
#: measurement (no GPU was available to measure it).
EIGH_GFLOPS_GPU = 1000.0
#: Evaluation windows assumed when the protocol evaluates "all" windows of a corpus
#: the planner does not tokenize: WikiText-2 test, 341,469 Llama-2 tokens / 2048.
ASSUMED_ALL_WINDOWS = 166

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


@dataclass(frozen=True)
class CellPlan:
    """One planned cell: sizes, estimates and whether its archive exists."""

    kept_dim: int
    sparsity: float
    parameter_count: int
    flops_per_token: int
    memory: dict[str, int]
    device_bytes: int
    seconds: dict[str, float]
    done: bool
    path: Path

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))


@dataclass(frozen=True)
class SweepPlan:
    """The cells a sweep would run and the assumptions behind the estimates."""

    model: str
    facts: ArchitectureFacts
    facts_source: str
    output: Path
    config_hash: str
    dtype: str
    device: str
    cells: list[CellPlan]
    reference_seconds: float
    reference_disk_bytes: int
    host_eigen_bytes: int
    host_bases_bytes: int = 0
    assumptions: list[str] = field(default_factory=list)

    @property
    def todo(self) -> list[CellPlan]:
        return [c for c in self.cells if not c.done]

    def render(self) -> str:
        """The plan as printed by ``--dry-run``."""
        f = self.facts
        lines = [
            f"plan: {self.model} ({f.architecture}, D={f.hidden_size}, {f.num_layers} layers, "
            f"heads {f.num_attention_heads}/{f.num_key_value_heads} KV, V={f.vocab_size}; "
            f"facts from {self.facts_source})",
            f"protocol: dtype {self.dtype}, device {self.device}, config hash "
            f"{self.config_hash[:12]}, archives in {self.output}",
            "",
        ]
        header = (
            "kept_dim",
            "sparsity",
            "parameters",
            "GFLOP/token",
            "device GiB",
            "est. time",
            "status",
        )
        rows = [
            (
                str(c.kept_dim),
                f"{c.sparsity:.4f}",
                f"{c.parameter_count:,}",
                f"{c.flops_per_token / 1e9:.2f}",
                f"{c.device_bytes / GIB:.1f}",
                _duration(c.total_seconds),
                "done" if c.done else "to run",
            )
            for c in self.cells
        ]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths)))
        lines.extend("  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows)
        todo = self.todo
        total = sum(c.total_seconds for c in todo) + (
            self.reference_seconds if any(c.kept_dim != f.hidden_size for c in todo) else 0.0
        )
        lines += [
            "",
            f"cells: {len(self.cells)} planned, {len(self.cells) - len(todo)} done, "
            f"{len(todo)} to run; estimated {_duration(total)} for those (dense reference "
            f"{_duration(self.reference_seconds)} included once; tasks not included)",
            f"dense reference on disk: {self.reference_disk_bytes / GIB:.2f} GiB; host memory "
            f"for the float64 eigendecompositions: {self.host_eigen_bytes / GIB:.2f} GiB"
            + (
                f", for the kept bases of the layer outputs (capture, L D d 8): "
                f"{self.host_bases_bytes / GIB:.2f} GiB"
                if self.host_bases_bytes
                else ""
            ),
        ]
        if todo:
            worst = max(todo, key=lambda c: c.device_bytes)
            parts = ", ".join(f"{k} {v / GIB:.1f}" for k, v in worst.memory.items())
            lines.append(f"largest cell d={worst.kept_dim} (GiB): {parts}")
        lines.append("")
        lines.extend(f"assumption: {a}" for a in self.assumptions)
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _on_gpu(config) -> bool:
    return str(config.device).startswith("cuda") or (
        config.device_map is not None and str(config.device_map) != "cpu"
    )


def _device_map_note(config, cells: list[CellPlan]) -> str:
    """What the device-memory column means under ``--device-map``, against the GPU caps."""
    from measure.devices import parse_max_memory, size_bytes

    note = (
        f"--device-map {config.device_map}: the device-memory column assumes one device and "
        "does not model accelerate's split"
    )
    caps = parse_max_memory(config.max_memory) or {}
    gpus = {k: size_bytes(v) for k, v in caps.items() if isinstance(k, int)}
    if not gpus:
        return note
    total = sum(gpus.values())
    weights = max(c.memory["weights"] for c in cells)
    verdict = (
        "fit within them"
        if weights <= total
        else f"exceed them by {(weights - total) / GIB:.1f} GiB, which accelerate keeps in host "
        "memory (or on disk); those layers visit GPU "
        f"{min(gpus)} one at a time while they are sliced"
    )
    return (
        f"{note}; the caps of GPU(s) {', '.join(map(str, sorted(gpus)))} sum to "
        f"{total / GIB:.1f} GiB and the largest cell's weights ({weights / GIB:.1f} GiB) {verdict}"
    )


def _eigh_gflops(config) -> float:
    return EIGH_GFLOPS_GPU if _on_gpu(config) else EIGH_GFLOPS


# --- model facts without weights ---------------------------------------------------------


def facts_from_config_dict(config: dict[str, Any]) -> ArchitectureFacts:
    """Architecture facts from a ``config.json`` mapping, through the registered adapter."""
    from measure.adapters import architecture_facts

    if not config.get("architectures"):
        raise UsageError("The model's config.json has no 'architectures' entry.")
    return architecture_facts(SimpleNamespace(**config))


def model_facts(model: str, *, revision: str | None = None) -> tuple[ArchitectureFacts, str]:
    """Facts of ``model`` and where they came from, without torch or network by default.

    Known aliases use their published facts. A local directory or a hub id needs a
    ``config.json`` (the hub id's must be in the local Hugging Face cache, or
    downloadable when ``HF_HUB_OFFLINE`` is not set).
    """
    if model in KNOWN_ARCHITECTURES:
        return KNOWN_ARCHITECTURES[model], f"the published configuration of '{model}'"
    path = Path(model).expanduser()
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise UsageError(f"The directory {path} holds no config.json.")
        return facts_from_config_dict(json.loads(config_file.read_text())), str(config_file)
    if "/" not in model:
        raise UsageError(
            f"Unknown model '{model}'. Known aliases: {', '.join(KNOWN_ARCHITECTURES)}; a "
            "Hugging Face id (owner/name) or a local model directory also works."
        )
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model, "config.json", revision=revision)
    if not isinstance(cached, str):
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
        if offline:
            raise ModelUnavailableError(
                f"The config of '{model}' is not in the local Hugging Face cache and "
                "HF_HUB_OFFLINE is set. Plan a known alias or a local directory instead."
            )
        from huggingface_hub import hf_hub_download

        try:
            cached = hf_hub_download(model, "config.json", revision=revision, etag_timeout=10)
        except Exception as exc:  # noqa: BLE001 - network failures come in many types
            raise ModelUnavailableError(
                f"The config of '{model}' cannot be fetched ({type(exc).__name__})."
            ) from None
    return facts_from_config_dict(json.loads(Path(cached).read_text())), f"{model} config.json"


# --- the plan ------------------------------------------------------------------------------


def _forward_flops(facts: ArchitectureFacts, kept_dim: int | None, seqlen: int) -> int:
    import sympy as sp

    from theory.counts import dense_flops_per_token, sliced_flops_per_token

    context = sp.Rational(seqlen + 1, 2)  # mean causal context of a window
    if kept_dim is None:
        return int(dense_flops_per_token(facts, context))
    return int(sliced_flops_per_token(facts, kept_dim, context))


def _stream_weights(facts: ArchitectureFacts) -> int:
    """Weights rotated by slicing: every matrix that reads or writes the residual stream."""
    f = facts
    qkv = (f.num_attention_heads + 2 * f.num_key_value_heads) * f.head_dim
    mlp_in = (2 if f.gated_mlp else 1) * f.intermediate_size
    per_layer = qkv + f.num_attention_heads * f.head_dim + mlp_in + f.intermediate_size
    return f.hidden_size * (f.num_layers * per_layer + 2 * f.vocab_size + f.learned_positions)


def plan_sweep(
    config: Any,
    output: str | os.PathLike[str],
    *,
    sparsities: Sequence[float] = (),
    kept_dims: Sequence[int] = (),
) -> SweepPlan:
    """Plan the sweep that ``config`` (a :class:`~measure.sweep.MeasureConfig`) describes."""
    from measure.archive import cell_path
    from measure.sweep import kept_dims_for
    from theory.counts import dense_parameter_count, sliced_parameter_count

    facts, source = model_facts(config.model, revision=config.revision)
    D, L, V = facts.hidden_size, facts.num_layers, facts.vocab_size
    dims = kept_dims_for(D, sparsities=sparsities, kept_dims=kept_dims, round_to=config.round_to)
    b = DTYPE_BYTES[config.dtype]
    config_hash = config.config_hash()
    output = Path(output)
    N, T_cal, B_cal = config.nsamples, config.calibration_seqlen, config.calibration_batch_size
    T = config.eval_seqlen
    windows = config.eval_windows if config.eval_windows is not None else ASSUMED_ALL_WINDOWS
    capture = min(config.capture_windows, windows)
    peak = PEAK_TFLOPS[config.dtype] * 1e12 * MFU
    dense_count = dense_parameter_count(facts)
    dense_flops = _forward_flops(facts, None, T)
    evaluation_bytes = config.batch_size * T * V * (b + 4 + 4)
    cells = []
    for d in dims:
        sliced = d != D
        count = (
            sliced_parameter_count(facts, d, slice_head=config.slice_head)
            if sliced
            else (dense_count)
        )
        flops = _forward_flops(facts, d, T) if sliced else dense_flops
        memory = {"weights": max(dense_count, count) * b}
        seconds = {"evaluation": windows * T * flops / peak}
        if sliced:
            if _on_gpu(config):
                # Offloaded: activations wait on the host; a batch's input, mid and output
                # are on the device while its layer half runs.
                memory["calibration batches in flight"] = 3 * B_cal * T_cal * D * b
            else:
                memory["calibration activations"] = 2 * N * T_cal * D * b
            memory["float64 moment batch"] = B_cal * T_cal * D * 8
            memory["float64 rotation"] = 2 * V * D * 8
            slicing = sum(memory[k] for k in memory if k != "weights")
            seconds["calibration"] = N * T_cal * _forward_flops(facts, None, T_cal) / peak
            seconds["rotation"] = 2 * d * _stream_weights(facts) / (FLOAT64_TFLOPS * 1e12 * MFU)
            seconds["eigendecomposition"] = (2 * L + 1) * 9 * D**3 / (_eigh_gflops(config) * 1e9)
            seconds["capture"] = capture * T * flops / peak
        else:
            slicing = 0
        memory["evaluation logits"] = evaluation_bytes
        device_bytes = memory["weights"] + max(slicing, evaluation_bytes)
        cells.append(
            CellPlan(
                kept_dim=d,
                sparsity=1.0 - d / D,
                parameter_count=int(count),
                flops_per_token=flops,
                memory=memory,
                device_bytes=int(device_bytes),
                seconds=seconds,
                done=cell_path(output, config.model, d, config_hash).is_file(),
                path=cell_path(output, config.model, d, config_hash),
            )
        )
    windows_note = (
        f"{config.eval_windows} evaluation windows"
        if config.eval_windows is not None
        else f"all evaluation windows, assumed {ASSUMED_ALL_WINDOWS} (WikiText-2 test, "
        "341,469 Llama-2 tokens / 2048; the real count depends on the tokenizer)"
    )
    assumptions = [
        f"time on {REFERENCE_GPU} at {PEAK_TFLOPS[config.dtype]:g} TFLOP/s {config.dtype} "
        f"dense peak x {MFU:.0%} MFU = {peak / 1e12:.1f} TFLOP/s; float64 rotations at "
        f"{FLOAT64_TFLOPS:g} x {MFU:.0%}; eigh of D x D at {_eigh_gflops(config):g} GFLOP/s "
        + (
            "(9 D^3 FLOPs, float64 on the GPU; assumed, not measured)"
            if _on_gpu(config)
            else "(9 D^3 FLOPs, one CPU core, measured; threaded above D = 1024)"
        )
        + "; lm-eval tasks not included",
        f"FLOPs per token at the mean causal context (T + 1) / 2 of a {T}-token window "
        "(theory.counts convention: 2 FLOPs per multiply-accumulate, shortcuts included)",
        f"{windows_note}; calibration {N} x {T_cal} tokens through the dense model; "
        f"capture {capture} windows",
        "device memory = max(P_dense, P_sliced) b + max(A + B_cal T D 8 + 2 V D 8, "
        f"B_eval T V (b + 8)) with b = {b} bytes ({config.dtype}) and A = "
        + (
            f"3 B_cal T D b (calibration activations offloaded: 2 N T D b = "
            f"{2 * N * T_cal * D * b / GIB:.1f} GiB wait in host memory)"
            if _on_gpu(config)
            else "2 N T D b (calibration activations)"
        )
        + "; see measure.plan",
    ]
    if config.device_map is not None:
        assumptions.append(_device_map_note(config, cells))
    if config.device == "cpu" and config.device_map is None:
        assumptions.append(
            "the protocol runs on the CPU; the times above are for the reference GPU "
            "(use --device cuda, or --profile paper)"
        )
    reference_disk = capture * L * T * D * 2 + capture * T * V * 4
    return SweepPlan(
        model=config.model,
        facts=facts,
        facts_source=source,
        output=output,
        config_hash=config_hash,
        dtype=config.dtype,
        device=config.device if config.device_map is None else f"device_map={config.device_map}",
        cells=cells,
        reference_seconds=capture * T * dense_flops / peak,
        reference_disk_bytes=int(reference_disk),
        host_eigen_bytes=6 * D * D * 8,
        host_bases_bytes=(
            L * D * max((c.kept_dim for c in cells if c.kept_dim != D), default=0) * 8
            if capture
            else 0
        ),
        assumptions=assumptions,
    )
