"""Resumable measurement sweeps: one archive per (model, kept_dim) cell.

A sweep measures the dense cell (``kept_dim = hidden_size``) and one sliced cell per kept
dimension. For every cell it records perplexity (per window), zero-shot accuracy (per item),
the PCA spectra of slicing, and the activation flow against the dense parent.

Dense work is done once per sweep: the corpora are tokenized once, the dense perplexity and
accuracies are measured once (the dense cell), and the dense residuals and logits that every
sliced cell is compared with are computed once into memory maps (:mod:`measure.capture`).

Resume: a cell whose archive exists with the same config hash is skipped. Archives are
written atomically, so a sweep killed between or inside cells loses no finished cell and
leaves no half-written one. A changed protocol has a different config hash, hence different
file names: new cells are written beside the old ones, never mixed with them.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from measure.archive import cell_path, read_cell, write_cell
from measure.errors import UsageError
from measure.versions import library_versions, package_version

DEFAULT_SPARSITIES = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5)
ANALOGY_TASKS = ("analogy_capitals", "analogy_family", "analogy_comparative", "analogy_currency")

# Fields that change how fast a run is, not what it measures: left out of the config hash.
# Storing activations changes what is kept, not the numbers: also left out.
NOT_HASHED = frozenset(
    {
        "batch_size",
        "calibration_batch_size",
        "task_batch_size",
        "device_map",
        "max_memory",
        "store_activations",
        "activation_dtype",
    }
)


@dataclass(frozen=True)
class MeasureConfig:
    """Everything that defines a measurement protocol, with its defaults (the CPU profile)."""

    model: str = field(default="smollm2", metadata={"help": "alias, HF id or local directory"})
    revision: str | None = field(default=None, metadata={"help": "hub revision"})
    dtype: str = field(default="float32", metadata={"help": "float32, float16 or bfloat16"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda or cuda:N"})
    device_map: str | None = field(default=None, metadata={"help": "e.g. auto"})
    max_memory: str | None = field(
        default=None, metadata={"help": "per-device caps: 0=20GiB,cpu=64GiB (or JSON)"}
    )
    calibration_corpus: str = field(default="enwiki-sample", metadata={"help": "corpus"})
    nsamples: int = field(default=64, metadata={"help": "calibration windows"})
    calibration_seqlen: int = field(default=512, metadata={"help": "tokens per window"})
    calibration_mode: str = field(default="random", metadata={"help": "random or contiguous"})
    seed: int = field(default=42, metadata={"help": "seed of calibration sampling"})
    orientation: str = field(default="pca", metadata={"help": "pca or random"})
    slice_head: bool = field(default=False, metadata={"help": "slice the head input too"})
    round_to: int = field(default=8, metadata={"help": "kept dims are multiples of this"})
    eval_corpus: str = field(default="enwiki-sample", metadata={"help": "corpus"})
    eval_seqlen: int = field(default=512, metadata={"help": "tokens per evaluation window"})
    eval_windows: int | None = field(default=24, metadata={"help": "None: every window"})
    batch_size: int = field(default=4, metadata={"help": "evaluation windows per forward"})
    calibration_batch_size: int = field(default=16, metadata={"help": "per forward"})
    tasks: tuple[str, ...] = field(default=ANALOGY_TASKS, metadata={"help": "task names"})
    task_items: int | None = field(default=50, metadata={"help": "items per task"})
    task_seed: int = field(default=1234, metadata={"help": "seed of offline task items"})
    task_batch_size: int = field(default=16, metadata={"help": "harness batch size"})
    capture_windows: int = field(default=4, metadata={"help": "windows for activation flow"})
    keep_token_nll: bool = field(default=False, metadata={"help": "store per-token NLL"})
    store_activations: tuple[int, ...] = field(
        default=(), metadata={"help": "layers whose mapped-back residuals are stored"}
    )
    activation_dtype: str = field(default="float16", metadata={"help": "float16 or float32"})

    def __post_init__(self) -> None:
        for name in ("nsamples", "calibration_seqlen", "eval_seqlen", "batch_size", "round_to"):
            if getattr(self, name) <= 0:
                raise UsageError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.capture_windows < 0:
            raise UsageError("capture_windows must be 0 (off) or positive.")
        if self.orientation not in ("pca", "random"):
            raise UsageError(f"orientation must be 'pca' or 'random', got {self.orientation!r}.")
        if self.calibration_mode not in ("random", "contiguous"):
            raise UsageError(
                f"calibration_mode must be 'random' or 'contiguous', got {self.calibration_mode!r}."
            )
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "store_activations", tuple(int(x) for x in self.store_activations))
        if self.activation_dtype not in ("float16", "float32"):
            raise UsageError(
                f"activation_dtype must be float16 or float32, got {self.activation_dtype!r}."
            )
        if self.store_activations and self.capture_windows == 0:
            raise UsageError("Storing activations needs capture windows (--capture-windows > 0).")

    def protocol(self) -> dict[str, Any]:
        """The hashed part of the config: what the measured numbers depend on."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_HASHED}

    def config_hash(self) -> str:
        payload = json.dumps(self.protocol(), sort_keys=True, default=list)
        return hashlib.sha256(payload.encode()).hexdigest()

    def replace(self, **changes: Any) -> MeasureConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_profile(cls, profile: str, **overrides: Any) -> MeasureConfig:
        if profile not in PROFILES:
            raise UsageError(f"Unknown profile '{profile}'. Profiles: {', '.join(PROFILES)}.")
        values = {**PROFILES[profile], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(**values)


PROFILES: dict[str, dict[str, Any]] = {
    # The documented CPU default: about 2 minutes per SmolLM2 cell on 2 quiet cores.
    "cpu": {},
    # SliceGPT / arXiv 2503.04377 protocol, for GPUs with hub access.
    "paper": {
        "device": "cuda",
        "dtype": "float16",
        "calibration_corpus": "wikitext2",
        "nsamples": 1024,
        "calibration_seqlen": 2048,
        "eval_corpus": "wikitext2",
        "eval_seqlen": 2048,
        "eval_windows": None,
        "batch_size": 8,
        "tasks": ("piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande"),
        "task_items": None,
        "task_batch_size": 64,
        "capture_windows": 8,
    },
    # A smoke test: seconds per cell.
    "quick": {
        "nsamples": 8,
        "calibration_seqlen": 128,
        "eval_seqlen": 128,
        "eval_windows": 4,
        "tasks": ("analogy_capitals",),
        "task_items": 20,
        "capture_windows": 2,
    },
}


def kept_dims_for(
    hidden_size: int,
    *,
    sparsities: Sequence[float] = (),
    kept_dims: Sequence[int] = (),
    round_to: int = 8,
) -> list[int]:
    """The sweep's kept dims, dense first, then descending; duplicates removed."""
    from theory.counts import kept_dim_from_sparsity

    dims = {hidden_size}
    for s in sparsities:
        if not 0.0 <= s < 1.0:
            raise UsageError(f"sparsity must lie in [0, 1), got {s}.")
        dims.add(kept_dim_from_sparsity(hidden_size, s, round_to))
    for d in kept_dims:
        if not 0 < d <= hidden_size:
            raise UsageError(f"kept dim must lie in 1..{hidden_size} (the hidden size), got {d}.")
        dims.add(int(d))
    return sorted(dims, reverse=True)


@dataclass
class CellReport:
    kept_dim: int
    path: Path
    skipped: bool
    seconds: float


class Sweep:
    """One sweep over kept dims for one model and protocol.

    Parameters
    ----------
    config : the protocol.
    output : directory of the archives.
    progress : show progress bars.
    """

    def __init__(self, config: MeasureConfig, output: str | Path, *, progress: bool = True) -> None:
        self.config = config
        self.output = Path(output)
        self.progress = progress
        self.hash = config.config_hash()
        self._prepared: dict[str, Any] | None = None

    # -- planning --------------------------------------------------------------------------
    def path(self, kept_dim: int) -> Path:
        return cell_path(self.output, self.config.model, kept_dim, self.hash)

    def done(self, kept_dim: int) -> bool:
        """True when the cell's archive exists and reads back valid (damage raises)."""
        path = self.path(kept_dim)
        if not path.exists():
            return False
        read_cell(path)
        return True

    # -- dense work, once ------------------------------------------------------------------
    def _load(self):
        from measure.devices import parse_max_memory
        from measure.models import load_model

        max_memory = parse_max_memory(self.config.max_memory)
        return load_model(
            self.config.model,
            device=self.config.device,
            dtype=self.config.dtype,
            device_map=self.config.device_map,
            max_memory=max_memory,
            revision=self.config.revision,
        )

    def prepare(self) -> dict[str, Any]:
        """Corpora, windows and the dense model's facts (done once)."""
        if self._prepared is not None:
            return self._prepared
        from measure.adapters import architecture_facts
        from measure.data import (
            calibration_windows,
            evaluation_windows,
            load_corpus,
            tokenize_texts,
        )

        cfg = self.config
        calibration = load_corpus(cfg.calibration_corpus)
        evaluation = (
            calibration
            if cfg.eval_corpus == cfg.calibration_corpus
            else load_corpus(cfg.eval_corpus)
        )
        loaded = self._load()
        facts = architecture_facts(loaded.model)
        tokenizer = loaded.tokenizer
        cal_tokens = tokenize_texts(calibration.calibration, tokenizer)
        cal = calibration_windows(
            cal_tokens,
            cfg.nsamples,
            cfg.calibration_seqlen,
            seed=cfg.seed,
            mode=cfg.calibration_mode,
            name=f"{calibration.name} calibration",
        )
        eval_tokens = tokenize_texts(evaluation.evaluation, tokenizer)
        windows = evaluation_windows(
            eval_tokens, cfg.eval_seqlen, cfg.eval_windows, name=f"{evaluation.name} evaluation"
        )
        capture = windows[: cfg.capture_windows]
        attrs = {
            **{
                k: loaded.provenance.get(k, "")
                for k in (
                    "model_id",
                    "model_revision",
                    "model_sha256",
                    "architecture",
                    "dtype",
                    "device",
                )
            },
            "calibration_corpus": calibration.name,
            "calibration_sha256": calibration.part_sha256("calibration"),
            "nsamples": cfg.nsamples,
            "calibration_seqlen": cfg.calibration_seqlen,
            "calibration_mode": cfg.calibration_mode,
            "seed": cfg.seed,
            "orientation": cfg.orientation,
            "slice_head": cfg.slice_head,
            "eval_corpus": evaluation.name,
            "evaluation_sha256": evaluation.part_sha256("evaluation"),
            "eval_seqlen": cfg.eval_seqlen,
            "eval_windows": int(windows.shape[0]),
            "tasks": list(cfg.tasks),
            "task_items": cfg.task_items if cfg.task_items is not None else "all",
            "harness_version": package_version("lm_eval"),
            "package_version": package_version("repdim", missing="unknown"),
            "library_versions": library_versions(),
            "config_hash": self.hash,
            "config": dataclasses.asdict(cfg),
            "capture_windows": int(capture.shape[0]),
            "dense_parameter_count": sum(p.numel() for p in loaded.model.parameters()),
        }
        self._prepared = {
            "loaded": loaded,
            "facts": facts,
            "calibration": cal,
            "windows": windows,
            "capture": capture,
            "attrs": attrs,
        }
        return self._prepared

    def _reference(self):
        from measure.capture import DenseReference

        prepared = self.prepare()
        if prepared["capture"].shape[0] == 0:
            return None
        if "reference" not in prepared:
            directory = self.output / f".dense-reference-{self.hash[:12]}"
            if DenseReference.exists(directory):  # left by an interrupted run of this protocol
                prepared["reference"] = DenseReference(directory)
                return prepared["reference"]
            loaded = prepared.get("loaded") or self._load()
            prepared["reference"] = DenseReference.compute(
                loaded.model,
                prepared["capture"],
                directory,
                centre=prepared["facts"].norm_kind == "layer",
                progress=self.progress,
            )
        return prepared["reference"]

    # -- cells -----------------------------------------------------------------------------
    def _measure(self, model, tokenizer, label: str) -> tuple[Any, dict | None]:
        from measure.metrics import perplexity
        from measure.tasks import run_tasks

        cfg = self.config
        prepared = self.prepare()
        ppl = perplexity(
            model,
            prepared["windows"],
            batch_size=cfg.batch_size,
            keep_token_nll=cfg.keep_token_nll,
            progress=self.progress,
            description=f"perplexity {label}",
        )
        tasks = None
        if cfg.tasks:
            tasks = run_tasks(
                model,
                tokenizer,
                cfg.tasks,
                n_items=cfg.task_items,
                seed=cfg.task_seed,
                batch_size=cfg.task_batch_size,
                progress=self.progress,
            )
        return ppl, tasks

    def _dense_cell(self) -> Path:
        from measure.cell import build_cell

        start = time.perf_counter()
        prepared = self.prepare()
        loaded = prepared["loaded"]
        facts = prepared["facts"]
        ppl, tasks = self._measure(loaded.model, loaded.tokenizer, f"d={facts.hidden_size}")
        attrs = {**prepared["attrs"], **_cell_attrs(start)}
        attrs.update(parameter_count=attrs["dense_parameter_count"], sparsity=0.0)
        ds = build_cell(
            model=self.config.model,
            hidden_size=facts.hidden_size,
            kept_dim=facts.hidden_size,
            ppl=ppl,
            tasks=tasks,
            attrs=attrs,
        )
        return write_cell(ds, self.path(facts.hidden_size))

    def _sliced_cell(self, kept_dim: int) -> Path:
        import torch

        from measure.capture import capture_flow
        from measure.cell import Spectrum, build_cell
        from measure.devices import redispatch, undispatch
        from measure.slicing import slice_model

        start = time.perf_counter()
        prepared = self.prepare()
        facts = prepared["facts"]
        reference = self._reference()
        # No dense copy is kept beside the sliced model: each cell loads the weights afresh.
        prepared.pop("loaded", None)
        gc.collect()
        loaded = self._load()
        model = loaded.model
        # A model dispatched by device_map is sliced without accelerate's hooks (offloaded
        # layers visit the map's main device in turn), then re-hooked with the same map.
        dispatch = undispatch(model)
        with torch.no_grad():
            result = slice_model(
                model,
                prepared["calibration"],
                kept_dim=kept_dim,
                slice_head=self.config.slice_head,
                orientation=self.config.orientation,
                seed=self.config.seed,
                round_to=self.config.round_to,
                batch_size=self.config.calibration_batch_size,
                # The capture maps layer outputs back: only their kept columns.
                record_bases=("out",) if reference is not None else False,
                # On an accelerator, calibration activations wait on the CPU between layers.
                offload_activations=True,
                device=None if dispatch is None else dispatch.main_device,
                progress=self.progress,
            )
        # Weights mapped to disk go next to the archives (a real disk), not to /tmp.
        model = redispatch(model, dispatch, offload_root=self.output)
        label = f"d={kept_dim}"
        ppl, tasks = self._measure(model, loaded.tokenizer, label)
        flow = None
        if reference is not None:
            bases = [s.basis for s in result.spectra if s.position == "out"]
            writer = self._activation_writer(kept_dim, facts)
            try:
                flow = capture_flow(model, reference, bases, progress=self.progress, writer=writer)
            except BaseException:
                if writer is not None:
                    writer.abort()
                raise
            if writer is not None:
                writer.close()
        spectrum = Spectrum(
            junctions=tuple(s.name for s in result.spectra),
            eigenvalues=_stack([s.eigenvalues for s in result.spectra]),
            kept_dims=tuple(int(s.kept_dim) for s in result.spectra),
        )
        attrs = {**prepared["attrs"], **_cell_attrs(start)}
        attrs.update(
            parameter_count=result.parameter_count(),
            slicing_seconds=round(result.total_seconds, 2),
            sparsity=1.0 - kept_dim / facts.hidden_size,
        )
        ds = build_cell(
            model=self.config.model,
            hidden_size=facts.hidden_size,
            kept_dim=kept_dim,
            ppl=ppl,
            tasks=tasks,
            spectrum=spectrum,
            flow=flow,
            attrs=attrs,
        )
        del model, loaded, result
        gc.collect()
        return write_cell(ds, self.path(kept_dim))

    def activations_path(self, kept_dim: int) -> Path:
        """Where a cell's stored activations go (beside its archive)."""
        return self.path(kept_dim).with_suffix(".activations.nc")

    def _activation_writer(self, kept_dim: int, facts):
        from measure.capture import ActivationWriter

        layers = self.config.store_activations
        if not layers:
            return None
        bad = [layer for layer in layers if not 0 <= layer < facts.num_layers]
        if bad:
            raise UsageError(
                f"--store-activations names layers {bad}; the model has layers "
                f"0..{facts.num_layers - 1}."
            )
        return ActivationWriter(
            self.activations_path(kept_dim),
            sorted(layers),
            self.config.eval_seqlen,
            facts.hidden_size,
            dtype=self.config.activation_dtype,
        )

    def run(
        self,
        kept_dims: Sequence[int],
        *,
        on_cell: Callable[[CellReport], None] | None = None,
    ) -> list[CellReport]:
        """Measure every cell not yet done; return one report per cell, in order."""
        from tqdm.auto import tqdm

        reports: list[CellReport] = []
        prepared_hidden = None
        todo = [d for d in kept_dims if not self.done(d)]
        if self.config.store_activations:
            # A finished cell without the activations asked for now is measured again.
            hidden = self.prepare()["facts"].hidden_size
            todo += [
                d
                for d in kept_dims
                if d not in todo and d != hidden and not self.activations_path(d).exists()
            ]
        bar = tqdm(kept_dims, desc="cells", unit="cell", disable=not self.progress)
        for kept_dim in bar:
            bar.set_postfix_str(f"d={kept_dim}")
            start = time.perf_counter()
            if kept_dim not in todo:
                report = CellReport(kept_dim, self.path(kept_dim), True, 0.0)
            else:
                if prepared_hidden is None:
                    prepared_hidden = self.prepare()["facts"].hidden_size
                if kept_dim == prepared_hidden:
                    path = self._dense_cell()
                else:
                    path = self._sliced_cell(kept_dim)
                report = CellReport(kept_dim, path, False, time.perf_counter() - start)
            reports.append(report)
            if on_cell is not None:
                on_cell(report)
        if all(self.done(d) for d in kept_dims):
            shutil.rmtree(self.output / f".dense-reference-{self.hash[:12]}", ignore_errors=True)
        return reports


def _stack(arrays):
    import numpy as np

    return np.stack([np.asarray(a, dtype=np.float64) for a in arrays])


def _cell_attrs(start: float) -> dict[str, Any]:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cell_seconds": round(time.perf_counter() - start, 2),
    }
